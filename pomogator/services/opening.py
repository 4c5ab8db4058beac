"""PostgreSQL: a chat message's first round trip touches the sender, takes the request from today's quota and reads
the context, all in one statement.

The model the quota is taken for is the sender's stored choice, so the statement decides it itself: the catalog's
ids and daily limits go in as parameters, and no choice means the default. A stored model gone from the catalog, or
a premium-only one without premium, is not decided here: the statement takes nothing and ``UserService.touch`` resets
it and says so, as on every other path. Nothing is cached between messages: premium, the model and
the quota are read where another process (the payment webhook, the CLI, another bot) may have changed them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pomogator.llm.catalog import Catalog
from pomogator.services.conversations import Turn, latest_turns_sql, turns_of
from pomogator.services.quota import QuotaService, Reservation, Rows, used_of
from pomogator.services.users import TOUCH_SQL, Account, Person, account_from_row, touch_values
from pomogator.store.engine import ASYNC_COMMIT_CTE, raw
from pomogator.store.tables import User
from pomogator.timeutil import as_utc, utcnow


def open_sql(models: int) -> str:
    """The statement for a catalog of ``models`` models.

    ``catalog`` is the catalog's ids and daily limits, as parameters (scalars: an array parameter would make asyncpg
    look up the array types on every new connection, three round trips); ``sender`` the upsert of ``TOUCH_SQL``;
    ``terms`` adds the model the request is for and the sender's limit for it today (0: not decided here, the stored
    model being gone from the catalog or allowing no requests); ``reserved`` is ``RESERVE_SQL`` written out for that
    model and limit. The context is read only when a request was taken. The result is one row: the sender's, with the
    context (``latest_turns_sql``). It commits without waiting for the disk (``ASYNC_COMMIT_CTE``).

    The rules are those of ``Model.daily_limit``, ``UserService._effective`` and ``RESERVE_SQL``, written again in
    SQL: change them together (``test_the_one_trip_statement_decides_as_the_services_do`` runs both ways on the same
    cases).
    """
    values = ", ".join(["({}::text, {}::int, {}::int)"] * models)
    return (
        f"WITH {ASYNC_COMMIT_CTE}, catalog (id, free_daily, premium_daily) AS (VALUES {values}), "
        "sender AS (" + TOUCH_SQL + "), terms AS (SELECT sender.*, catalog.id AS chosen, "
        "CASE WHEN sender.model <> catalog.id THEN 0 "
        "WHEN sender.premium_until > {} THEN catalog.premium_daily ELSE catalog.free_daily END AS daily_limit "
        "FROM sender JOIN catalog "
        "ON catalog.id = COALESCE((SELECT id FROM catalog WHERE id = sender.model), {}::text)), "
        "reserved AS (INSERT INTO daily_usage (telegram_id, model, day, used) "
        "SELECT telegram_id, chosen, {}, 1 FROM terms WHERE daily_limit > 0 "
        "ON CONFLICT (telegram_id, model, day) DO UPDATE SET used = daily_usage.used + 1 "
        "WHERE daily_usage.used < (SELECT daily_limit FROM terms) RETURNING used), "
        "context AS (" + latest_turns_sql("telegram_id = {} AND EXISTS (SELECT FROM reserved)") + ") "
        "SELECT terms.telegram_id, terms.first_name, terms.username, terms.model, terms.role, terms.email, "
        "terms.created_at, terms.premium_until, terms.chosen, terms.daily_limit, reserved.used, context.* "
        "FROM terms CROSS JOIN async_commit LEFT JOIN reserved ON TRUE CROSS JOIN context"
    )


@dataclass(frozen=True, slots=True)
class Opened:
    """What ``MessageOpener.open`` found: the account, today's requests of its model after the reservation (None: the
    quota was used up and nothing was taken, nor the context read), their limit and the context."""

    account: Account
    day: str
    used: int | None
    limit: int
    history: list[Turn]


class MessageOpener:
    def __init__(self, catalog: Catalog, quota: QuotaService) -> None:
        self.catalog = catalog
        self.quota = quota
        self._sql = open_sql(len(catalog.models))
        self._catalog = [value for m in catalog.models for value in (m.id, m.free_daily, m.premium_daily)]

    async def open(self, person: Person) -> Opened | None:
        """One round trip; None when the statement could not decide the model (the stored one needs premium the
        sender no longer has, or allows no requests at all): then nothing was taken and nothing read. A caller
        cancelled meanwhile gets back what the statement took (``QuotaService.take``)."""
        now = utcnow()
        day = self.quota.today(now)

        def taken(rows: Rows) -> Reservation | None:
            used = used_of(rows)
            if used is None:
                return None
            return Reservation(person.telegram_id, rows[0]["chosen"], day, used, int(rows[0]["daily_limit"]))

        statement = raw(
            User,
            self._sql,
            *self._catalog,
            *touch_values(person, now),
            now,
            self.catalog.default_id,
            day,
            person.telegram_id,
        )
        return self._opened(await self.quota.take(statement, taken), now, day)

    def _opened(self, rows: Sequence[Mapping[str, Any]], now: datetime, day: str) -> Opened | None:
        first = rows[0]
        limit = int(first["daily_limit"])
        if limit <= 0:
            return None
        model = self.catalog.get(first["chosen"])
        premium_until = as_utc(first["premium_until"]) if first["premium_until"] is not None else None
        account = account_from_row(first, model, premium_until if premium_until and premium_until > now else None)
        used = int(first["used"]) if first["used"] is not None else None
        return Opened(account, day, used, limit, turns_of(first))
