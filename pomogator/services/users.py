"""People: get-or-create, model and role choice, profile, erasure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pomogator.errors import InvalidEmail, PremiumRequired, RoleTooLong, UserNotFound
from pomogator.llm.catalog import Catalog, Model
from pomogator.services.quota import QuotaService
from pomogator.services.subscriptions import SubscriptionService, lock_person, running_until
from pomogator.store.engine import ASYNC_COMMIT_CTE, Database, raw
from pomogator.store.tables import DailyUsage, DialogMessage, LLMRequest, LogRecord, Payment, Subscription, User
from pomogator.timeutil import as_utc, utcnow

if TYPE_CHECKING:
    from piccolo.custom_types import Combinable

# The request counts of people who erased their data, from the days before today (the argument).
FORGET_ERASED_USAGE_SQL = (
    "DELETE FROM daily_usage WHERE day <> {} "
    "AND NOT EXISTS (SELECT 1 FROM users WHERE users.telegram_id = daily_usage.telegram_id)"
)
# An address a receipt can go to: no dot at either end of the local part or twice in a row; a domain of labels that
# begin and end with a letter or digit, ending in a top-level domain of two letters or more (or punycode).
EMAIL_RE = re.compile(
    r"^(?![.])(?!.*[.][.])[^@\s<>()\[\],;:\"«»]+(?<![.])"
    r"@(?:[^\W_](?:(?:[^\W_]|-)*[^\W_])?[.])+(?:[^\W\d_]{2,}|xn--[a-z0-9-]+)$",
    re.IGNORECASE,
)
# What people type around an address: "Иван <ivan@mail.ru>", quotes, a sentence's final period or comma.
NAMED_RE = re.compile(r"^[^<>@]*<([^<>]+)>$")
WRAPPING = " \t\r\n<>\"'«»()[]"
TRAILING = ".,;:!?"


def checked_email(email: str) -> str:
    """``email`` without what is typed around an address (spaces, angle brackets, quotes, a final period), when
    it is an address receipts can go to; raises InvalidEmail."""
    value = email.strip()
    named = NAMED_RE.match(value)
    if named:
        value = named.group(1)
    if value.lower().startswith("mailto:"):
        value = value[len("mailto:") :]
    while (trimmed := value.strip(WRAPPING).rstrip(TRAILING)) != value:
        value = trimmed
    if len(value) > 254 or not EMAIL_RE.match(value):
        raise InvalidEmail()
    return value


# Every message touches its sender: the upsert also returns the end of their latest subscription, so the hot path
# reads the person and their premium in one round trip (the same statement on SQLite and PostgreSQL).
TOUCH_SQL = (
    "INSERT INTO users (telegram_id, first_name, last_name, username, language, created_at, last_seen_at) "
    "VALUES ({}, {}, {}, {}, {}, {}, {}) "
    "ON CONFLICT (telegram_id) DO UPDATE SET first_name = excluded.first_name, last_name = excluded.last_name, "
    "username = excluded.username, language = excluded.language, last_seen_at = excluded.last_seen_at "
    "RETURNING telegram_id, first_name, username, model, role, email, created_at, "
    "(SELECT MAX(ends_at) FROM subscriptions WHERE subscriptions.telegram_id = users.telegram_id) AS premium_until"
)

# PostgreSQL: ``TOUCH_SQL`` committing without waiting for the disk (``ASYNC_COMMIT_CTE``), as the other statements of
# a chat message do; every update (a command, a button, a file) starts with it.
TOUCH_LAZILY_SQL = (
    f"WITH {ASYNC_COMMIT_CTE}, sender AS ({TOUCH_SQL}) SELECT sender.* FROM sender CROSS JOIN async_commit"
)


@dataclass(frozen=True, slots=True)
class Person:
    """Who is asking, as Telegram describes them."""

    telegram_id: int
    first_name: str = ""
    last_name: str = ""
    username: str | None = None
    language: str | None = None


class ModelReset(StrEnum):
    """Why ``UserService.touch`` cleared the person's stored model (the default model is theirs now)."""

    PREMIUM_ENDED = "premium_ended"
    """A premium-only model, and the person's premium has ended."""
    PREMIUM_ONLY = "premium_only"
    """A model the catalog now gives only with premium, to a person who never had it."""
    GONE = "gone"
    """A model no longer in the catalog."""


@dataclass(frozen=True, slots=True)
class Account:
    """A stored person with their effective model and premium state."""

    telegram_id: int
    first_name: str
    username: str | None
    model: Model
    role: str | None
    email: str | None
    premium_until: datetime | None
    created_at: datetime
    # Set by ``UserService.touch`` only, when it has just reset the stored model to the default: the person is told.
    model_reset: ModelReset | None = None
    # The premium-only model that was reset (None for one gone from the catalog).
    reset_from: Model | None = None

    @property
    def premium(self) -> bool:
        return self.premium_until is not None


@dataclass(frozen=True, slots=True)
class ModelAllowance:
    model: Model
    used: int
    limit: int

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)


@dataclass(frozen=True, slots=True)
class Profile:
    account: Account
    requests_today: int
    allowances: tuple[ModelAllowance, ...]

    @property
    def current(self) -> ModelAllowance:
        return next(a for a in self.allowances if a.model.id == self.account.model.id)


def touch_values(person: Person, now: datetime) -> tuple[Any, ...]:
    """The values of ``TOUCH_SQL``'s placeholders for ``person`` seen at ``now``."""
    return (
        person.telegram_id,
        person.first_name[:255],
        person.last_name[:255],
        person.username,
        person.language,
        now,
        now,
    )


def account_from_row(
    row: Mapping[str, Any],
    model: Model,
    premium_until: datetime | None,
    *,
    model_reset: ModelReset | None = None,
    reset_from: Model | None = None,
) -> Account:
    """The account of a user row (``TOUCH_SQL``'s columns) once its effective model and running premium are known."""
    return Account(
        telegram_id=row["telegram_id"],
        first_name=row["first_name"],
        username=row["username"],
        model=model,
        role=row["role"],
        email=row["email"],
        premium_until=premium_until,
        created_at=as_utc(row["created_at"]),
        model_reset=model_reset,
        reset_from=reset_from,
    )


@dataclass(frozen=True, slots=True)
class StoredData:
    """What is stored under a Telegram id, or was erased (``UserService.erase``): whether it has an account, and
    how many of each kind of record."""

    account: bool
    messages: int = 0
    requests: int = 0
    subscriptions: int = 0
    log_records: int = 0
    # Days of request counts before today (today's stay until the day is over).
    usage_days: int = 0
    # Payments kept for accounting, unlinked from the id.
    payments: int = 0

    def __bool__(self) -> bool:
        return self.account or any(count for count, _, _ in self._counted())

    def describe(self) -> str:
        """The records, as "3 dialog messages, 1 subscription", or "nothing"."""
        parts = [f"{count} {one if count == 1 else many}" for count, one, many in self._counted() if count]
        return ", ".join(parts) or "nothing"

    def _counted(self) -> list[tuple[int, str, str]]:
        return [
            (self.messages, "dialog message", "dialog messages"),
            (self.requests, "model request", "model requests"),
            (self.subscriptions, "subscription", "subscriptions"),
            (self.log_records, "log record", "log records"),
            (self.usage_days, "day of request counts", "days of request counts"),
            (self.payments, "payment (kept, unlinked)", "payments (kept, unlinked)"),
        ]


# The tables ``UserService.erase`` deletes a person's rows from, by the name of their count in ``StoredData``.
ERASED_TABLES: dict[str, type[DialogMessage | LLMRequest | Subscription | LogRecord]] = {
    "messages": DialogMessage,
    "requests": LLMRequest,
    "subscriptions": Subscription,
    "log_records": LogRecord,
}


class UserService:
    def __init__(
        self,
        database: Database,
        catalog: Catalog,
        subscriptions: SubscriptionService,
        quota: QuotaService,
        role_max_chars: int,
    ) -> None:
        self.database = database
        self.catalog = catalog
        self.subscriptions = subscriptions
        self.quota = quota
        self.role_max_chars = role_max_chars

    async def touch(self, person: Person) -> Account:
        """Create the person or refresh their names and last-seen time; return their account. Every update's first
        step: it commits without waiting for the disk, as a chat message's statements do; inside a transaction it
        leaves the transaction's commit as it is.

        The one path that resets a stored model the person may no longer use (premium-only without premium, or gone
        from the catalog) to the default: ``Account.model_reset`` then says why, and the caller tells the person.
        """
        lazily = not self.database.is_sqlite and self.database.engine.current_transaction.get() is None
        rows = await raw(
            User, TOUCH_LAZILY_SQL if lazily else TOUCH_SQL, *touch_values(person, utcnow()), lazy_commit=True
        )
        row = rows[0]
        premium_until = running_until(row["premium_until"])
        reason = self._unusable(row["model"], premium_until, had_premium=row["premium_until"] is not None)
        if reason is None:
            return account_from_row(row, self._effective(row["model"], premium_until), premium_until)
        # Only the touch that clears the choice reports it: another one at the same time finds it cleared.
        cleared = (
            await User.update({User.model: None})
            .where((User.telegram_id == row["telegram_id"]) & (User.model == row["model"]))
            .returning(User.telegram_id)
        )
        return account_from_row(
            row,
            self.catalog.default,
            premium_until,
            model_reset=reason if cleared else None,
            reset_from=self.catalog.find(row["model"]) if cleared else None,
        )

    async def ensure(self, telegram_id: int) -> Account:
        """The account, created with no names when it does not exist (admin commands, receipts). A stored model the
        person may no longer use is not reset here (see ``touch``)."""
        row = await User.select().where(User.telegram_id == telegram_id).first()
        if row is None:
            return await self.touch(Person(telegram_id))
        return await self._account(row)

    async def grant_premium(self, telegram_id: int, days: int) -> tuple[datetime, bool]:
        """Premium for ``days`` more days, given by an admin (it extends a running subscription); the account is
        created when the person never wrote to the bot. Returns the premium's new end and whether the account was
        created (a mistyped id would otherwise look like a success for someone else). Raises PremiumTooLong."""
        async with self.database.transaction():
            # The person's lock first, as an erasure takes it: then the account is made, and the premium granted,
            # together or not at all (PremiumTooLong makes no account).
            await lock_person(telegram_id)
            created = not await self.exists(telegram_id)
            await self.ensure(telegram_id)
            return await self.subscriptions.grant(telegram_id, days, plan="manual"), created

    async def get(self, telegram_id: int) -> Account:
        """The account with its effective model; nothing is written (a stored model the person may no longer use is
        reset, and the person told, by ``touch``). Raises UserNotFound."""
        row = await User.select().where(User.telegram_id == telegram_id).first()
        if row is None:
            raise UserNotFound(telegram_id)
        return await self._account(row)

    async def exists(self, telegram_id: int) -> bool:
        return bool(await User.exists().where(User.telegram_id == telegram_id))

    async def list(self, limit: int = 1000) -> list[Account]:
        """The ``limit`` newest users, newest first: the ones an operator looks for."""
        rows = await (
            User.select()
            .order_by(User.created_at, ascending=False)
            .order_by(User.telegram_id, ascending=False)
            .limit(limit)
        )
        premium = await self.subscriptions.premium_until_of([row["telegram_id"] for row in rows])
        return [self._account_with(row, premium[row["telegram_id"]]) for row in rows]

    async def _account(self, row: Mapping[str, Any]) -> Account:
        """The account of a user row with its effective model, read only: the stored model stays as it is."""
        return self._account_with(row, await self.subscriptions.premium_until(row["telegram_id"]))

    def _account_with(self, row: Mapping[str, Any], premium_until: datetime | None) -> Account:
        return account_from_row(row, self._effective(row["model"], premium_until), premium_until)

    def _unusable(self, stored: str | None, premium_until: datetime | None, *, had_premium: bool) -> ModelReset | None:
        """Why the stored model cannot be the person's (None when it can, or when none is stored)."""
        if stored is None:
            return None
        model = self.catalog.find(stored)
        if model is None:
            return ModelReset.GONE
        if model.premium_only and premium_until is None:
            return ModelReset.PREMIUM_ENDED if had_premium else ModelReset.PREMIUM_ONLY
        return None

    def _effective(self, stored: str | None, premium_until: datetime | None) -> Model:
        """The model the person's requests go to: the stored one while they may use it, else the default. Decided in
        SQL too, by PostgreSQL's one-trip statement (``services.opening``): a test keeps the two the same."""
        model = self.catalog.find(stored)
        if model is None or (model.premium_only and premium_until is None):
            return self.catalog.default
        return model

    async def set_model(self, telegram_id: int, model_id: str) -> Model:
        """Raises UnknownModel, PremiumRequired (the choice then stays as it was), UserNotFound."""
        model = self.catalog.get(model_id)
        account = await self.get(telegram_id)
        if model.premium_only and not account.premium:
            raise PremiumRequired(model.id)
        await User.update({User.model: model.id}).where(User.telegram_id == telegram_id)
        return model

    async def set_role(self, telegram_id: int, role: str | None) -> None:
        """Set the system prompt; None or blank clears it. Raises RoleTooLong."""
        text = role.strip() if role else ""
        if len(text) > self.role_max_chars:
            raise RoleTooLong(len(text), self.role_max_chars)
        await User.update({User.role: text or None}).where(User.telegram_id == telegram_id)

    async def set_email(self, telegram_id: int, email: str) -> str:
        """Store the receipt email; raises InvalidEmail."""
        value = checked_email(email)
        await User.update({User.email: value}).where(User.telegram_id == telegram_id)
        return value

    async def profile(self, telegram_id: int) -> Profile:
        account = await self.get(telegram_id)
        used = await self.quota.used_today(telegram_id)
        allowances = tuple(
            ModelAllowance(model, used.get(model.id, 0), model.daily_limit(account.premium))
            for model in self.catalog.models
        )
        return Profile(account=account, requests_today=sum(used.values()), allowances=allowances)

    async def forget_erased_usage(self) -> None:
        """Delete the request counts an erasure kept for its day (see ``delete``) once that day is over."""
        await DailyUsage.raw(FORGET_ERASED_USAGE_SQL, self.quota.today())

    async def delete(self, telegram_id: int) -> bool:
        """Erase the person (``erase``); True when they had an account."""
        return (await self.erase(telegram_id)).account

    async def erase(self, telegram_id: int) -> StoredData:
        """Erase what is stored under ``telegram_id``: the account, dialogs, usage, subscriptions, logs; also when
        there is no account (a log record or a subscription may be stored under an id that has none). Payments stay
        for accounting, unlinked. Today's request counts stay until the day is over, then ``forget_erased_usage``
        takes them. Returns what was erased.

        An answer streaming meanwhile stores nothing afterwards (``ChatService`` stores only for an existing row).
        """
        async with self.database.transaction():
            # One change to the person's premium at a time: a payment being applied now is applied wholly before the
            # erasure (which then takes it) or wholly after (as a payment made after an erasure).
            await lock_person(telegram_id)
            # The row goes first: on PostgreSQL this waits for an answer being stored (it holds the row), so the
            # DELETEs below see its turns and usage; an answer stored later finds no row.
            account = await User.delete().where(User.telegram_id == telegram_id).returning(User.telegram_id)
            counts = {}
            for name, table in ERASED_TABLES.items():
                key = table._meta.primary_key
                counts[name] = len(await table.delete().where(table.telegram_id == telegram_id).returning(key))
            # Today's request counts stay until the day is over (``forget_erased_usage``): an erasure must not give
            # the day's requests back.
            usage = await DailyUsage.delete().where(self._past_usage(telegram_id)).returning(DailyUsage.day)
            payments = (
                await Payment.update({Payment.telegram_id: None, Payment.raw_object: None})
                .where(Payment.telegram_id == telegram_id)
                .returning(Payment.telegram_id)
            )
        return StoredData(account=bool(account), **counts, usage_days=len(usage), payments=len(payments))

    async def stored(self, telegram_id: int) -> StoredData:
        """What ``erase`` would erase now (nothing is changed)."""
        counts = {
            name: await table.count().where(table.telegram_id == telegram_id) for name, table in ERASED_TABLES.items()
        }
        return StoredData(
            account=await self.exists(telegram_id),
            **counts,
            usage_days=await DailyUsage.count().where(self._past_usage(telegram_id)),
            payments=await Payment.count().where(Payment.telegram_id == telegram_id),
        )

    def _past_usage(self, telegram_id: int) -> Combinable:
        return (DailyUsage.telegram_id == telegram_id) & (DailyUsage.day != self.quota.today())
