"""Premium sold through YooKassa: checkout, applying what the payment API says, refunds.

A notification from YooKassa is only a hint: every state change is fetched back from the API by id and checked
against the payment row we stored before asking YooKassa to create it. The bot (pressing a plan), the web app
(the webhook) and the CLI (``payments check`` / ``refund``) all go through the methods here.

Payment row statuses: ``new`` (stored before the create call), ``error`` (the call failed without a definite
answer — the next press retries it with the same idempotence key), ``failed`` (YooKassa refused it), then
YooKassa's ``pending`` / ``succeeded`` / ``canceled``, and ``unverified`` (the API's answer did not match the row;
admins are told).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from loguru import logger

from pomogator.billing import texts
from pomogator.billing.models import (
    CANCELED,
    CENT,
    ERROR,
    FAILED,
    NEW,
    PENDING,
    SUCCEEDED,
    UNVERIFIED,
    ReceiptSpec,
    RemotePayment,
    RemoteRefund,
    money,
)
from pomogator.config import Settings
from pomogator.errors import (
    BillingError,
    EmailRequired,
    InvalidEmail,
    PaymentAlreadyMade,
    PaymentNotFound,
    PaymentNotVerified,
    PaymentProviderUnavailable,
    PaymentRejected,
    RefundEmailRequired,
)
from pomogator.logs import alerts
from pomogator.logs.records import about
from pomogator.notify import SendResult
from pomogator.services.subscriptions import SubscriptionService, lock_person
from pomogator.services.users import UserService, checked_email
from pomogator.store.engine import Database, write_transaction
from pomogator.store.tables import Payment
from pomogator.timeutil import as_utc, utcnow

if TYPE_CHECKING:
    from piccolo.columns import Column

    from pomogator.billing.yookassa import YooKassaClient

CURRENCY = "RUB"
# An unverified payment's problem is told to the admins again after a day at the soonest; so many are remembered.
RETOLD_AFTER_S = 24 * 3600.0
TOLD_MEMORY = 1000
# YooKassa's cancellation reason for a payment whose page was left without paying until it expired.
ABANDONED = "expired_on_confirmation"
# Piccolo adds the `id` column itself, invisibly to the type checker.
payment_pk = Payment._meta.primary_key
REUSE_WINDOW = timedelta(minutes=15)
# Payments still waiting for the person are asked about from this age on: their notification may never come (the
# web app down for longer than YooKassa's day of retries, a proxy refusing it). Younger ones are being paid now;
# YooKassa cancels an unpaid one within hours, so after two days none is left to ask about.
CHECK_AFTER = timedelta(minutes=10)
CHECK_UNTIL = timedelta(days=2)
# A refund whose answer was lost keeps its idempotence key (``Payment.refund_key``) for as long as YooKassa keeps
# keys: asked again within that time, it is made at most once. After it, what was made shows in the payment's
# refunded amount.
REFUND_KEY_LIFETIME = timedelta(hours=24)
# The payer's notice is claimed by the process that sends it (``Payment.notice_claimed_at``, first in the transaction
# that records the payment) and marked sent once delivered. One that did not go out (the process stopped before
# telling them, or Telegram failed) is claimed again by a later check or notification once this has passed since the
# last claim: longer than a send takes at the worst (three tries, each waiting out at most 30 s of flood control),
# so two processes never send it at once.
NOTICE_LEASE = timedelta(minutes=5)


class Notifier(Protocol):
    """Sends a plain message to a Telegram chat; never raises (pomogator.notify.TelegramNotifier)."""

    async def send(self, chat_id: int, text: str) -> SendResult: ...


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    price: Decimal
    days: int


@dataclass(frozen=True, slots=True)
class Checkout:
    """A payment the user can pay now by opening ``confirmation_url``."""

    payment_id: str
    plan: str
    amount: Decimal
    confirmation_url: str
    reused: bool
    # Plans of the person's other payments that can still be paid too (a month asked for, then a year).
    also_pending: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    payment_id: str
    telegram_id: int | None
    status: str
    # True when this call changed our records (activated, canceled); False for a replay or a pending payment.
    changed: bool
    premium_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    payment_id: str
    refund_id: str | None
    status: str
    amount: Decimal
    refunded_total: Decimal
    changed: bool
    premium_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    local_id: int
    payment_id: str | None
    telegram_id: int | None
    plan: str
    amount: Decimal
    currency: str
    status: str
    refunded_amount: Decimal
    cancellation_reason: str | None
    created_at: datetime
    updated_at: datetime


def _reusable(row: Mapping[str, Any], plan: Plan) -> bool:
    """Whether ``_open_payment`` offers ``row`` again rather than a new payment (see there)."""
    if row["status"] == PENDING:
        return _decimal(row["amount"]) == plan.price
    return row["status"] in (NEW, ERROR) and as_utc(row["created_at"]) >= utcnow() - REUSE_WINDOW


def _unanswered_refund(row: Mapping[str, Any]) -> tuple[str, Decimal, datetime] | None:
    """The key, amount and time of the payment's refund whose answer was lost, while YooKassa still knows the key."""
    key, asked_at = row["refund_key"], row["refund_key_at"]
    if key is None or asked_at is None or as_utc(asked_at) <= utcnow() - REFUND_KEY_LIFETIME:
        return None
    return key, _decimal(row["refund_key_amount"]), as_utc(asked_at)


async def _forget_refund_key(payment_id: int, key: str) -> None:
    await Payment.update(
        {Payment.refund_key: None, Payment.refund_key_amount: None, Payment.refund_key_at: None}
    ).where((payment_pk == payment_id) & (Payment.refund_key == key))


def checked_refund_amount(amount: Decimal) -> Decimal:
    """``amount`` as a refund may ask for it: more than zero and in whole kopecks (rounding would refund another
    sum than the one asked for). Raises BillingError."""
    if not amount.is_finite() or amount <= 0:
        raise BillingError("The refund amount must be more than zero.")
    try:
        kopecks = amount.quantize(CENT)
    except InvalidOperation:
        raise BillingError(f"{amount} is too large an amount.") from None
    if kopecks != amount:
        raise BillingError(f"{amount} has more than 2 decimal places; give rubles and kopecks, e.g. 299.50.")
    return kopecks


def _decimal(value: Any) -> Decimal:
    # SQLite hands NUMERIC back through float; two decimals are all a price ever has.
    return Decimal(str(value if value is not None else 0)).quantize(CENT)


async def waiting_payments(now: datetime | None = None) -> list[str]:
    """Our payments something is still owed for, to ask YooKassa about (``BillingService.check_waiting``): ones it
    has not settled, old enough (see ``CHECK_AFTER``); succeeded ones whose payer was not told (see
    ``NOTICE_LEASE``); and ones with a refund it answered as pending. A plain query: the web app asks it before
    building the billing service, which imports the YooKassa SDK."""
    now = now or utcnow()
    unsettled = (
        (Payment.status == PENDING)
        & (Payment.created_at <= now - CHECK_AFTER)
        & (Payment.created_at > now - CHECK_UNTIL)
    )
    untold = (
        (Payment.status == SUCCEEDED)
        & Payment.notified_at.is_null()
        & Payment.telegram_id.is_not_null()
        & (Payment.notice_claimed_at <= now - NOTICE_LEASE)
        & (Payment.updated_at > now - CHECK_UNTIL)
    )
    refunding = (Payment.status == SUCCEEDED) & Payment.refund_waiting_id.is_not_null()
    rows = await Payment.select(Payment.yookassa_id).where(
        Payment.yookassa_id.is_not_null() & (unsettled | untold | refunding)
    )
    return [row["yookassa_id"] for row in rows]


async def _mark_told(payment_id: int) -> None:
    await Payment.update({Payment.notified_at: utcnow()}).where(
        (payment_pk == payment_id) & Payment.notified_at.is_null()
    )


async def _forget_waiting_refund(payment_id: int, refund_id: str) -> None:
    await Payment.update({Payment.refund_waiting_id: None}).where(
        (payment_pk == payment_id) & (Payment.refund_waiting_id == refund_id)
    )


async def list_payments(
    *, telegram_id: int | None = None, status: str | None = None, limit: int = 100
) -> list[PaymentRecord]:
    """Payments as stored, newest first: a plain query, no YooKassa (``pomogator payments list`` works without
    its keys)."""
    query = Payment.select().order_by(Payment.created_at, ascending=False).limit(limit)
    if telegram_id is not None:
        query = query.where(Payment.telegram_id == telegram_id)
    if status is not None:
        query = query.where(Payment.status == status)
    return [
        PaymentRecord(
            local_id=row["id"],
            payment_id=row["yookassa_id"],
            telegram_id=row["telegram_id"],
            plan=row["plan"],
            amount=_decimal(row["amount"]),
            currency=row["currency"],
            status=row["status"],
            refunded_amount=_decimal(row["refunded_amount"]),
            cancellation_reason=row["cancellation_reason"],
            created_at=as_utc(row["created_at"]),
            updated_at=as_utc(row["updated_at"]),
        )
        for row in await query
    ]


class BillingService:
    def __init__(
        self,
        database: Database,
        kassa: YooKassaClient,
        users: UserService,
        subscriptions: SubscriptionService,
        notifier: Notifier | None,
        settings: Settings,
    ) -> None:
        self.database = database
        self.kassa = kassa
        self.users = users
        self.subscriptions = subscriptions
        self.notifier = notifier
        self.settings = settings
        self.tz = settings.tz
        self.plans: dict[str, Plan] = {
            "month": Plan("month", settings.price_month_rub, settings.month_days),
            "year": Plan("year", settings.price_year_rub, settings.year_days),
        }
        # When each unverified payment's problem was last told to the admins (``_not_verified``).
        self._told: dict[tuple[str, str], float] = {}

    @staticmethod
    def _offer(row: Mapping[str, Any], plan: Plan) -> Plan:
        """``plan`` as the payment ``row`` offered it: the price and the days it was made with."""
        return Plan(plan.name, _decimal(row["amount"]), row["days"] or plan.days)

    def plan(self, name: str) -> Plan:
        try:
            return self.plans[name]
        except KeyError:
            raise BillingError(f"Unknown plan {name!r}; plans: {', '.join(self.plans)}.") from None

    # --- checkout ---------------------------------------------------------------------------------------------

    async def start_payment(self, telegram_id: int, plan_name: str, *, bot_link: str = "") -> Checkout:
        """A payment link for ``plan_name``: one for the same plan that can still be paid is offered again
        (``_open_payment``).
        The payer comes back to ``POMOGATOR_PAYMENT_RETURN_URL``, by default to ``bot_link`` (the bot's t.me link).

        Raises EmailRequired (receipts are on and no email is stored), InvalidEmail (YooKassa refused the stored
        one for the receipt), PaymentAlreadyMade (the payment it would offer again was paid meanwhile),
        PaymentProviderUnavailable (nothing was charged; pressing again retries with the same idempotence key),
        PaymentRejected, UserNotFound.
        """
        plan = self.plan(plan_name)
        account = await self.users.get(telegram_id)
        if self.settings.receipt_enabled and not account.email:
            raise EmailRequired()
        return_url = self.settings.payment_return_url or bot_link
        passed: int | None = None
        for _ in range(3):
            row, fresh = await self._open_payment(telegram_id, plan, passed)
            if fresh:
                checkout = await self._submit(
                    row["id"],
                    row["idempotence_key"],
                    telegram_id,
                    plan,
                    plan.price,
                    account.email,
                    return_url,
                )
                if checkout is None:
                    raise PaymentProviderUnavailable("YooKassa did not return a payment link.")
                return await self._with_others(checkout, telegram_id)
            checkout = await self._reuse(row, account.email, return_url)
            if checkout is not None:
                return await self._with_others(checkout, telegram_id)
            passed = row["id"]
        raise PaymentProviderUnavailable("YooKassa did not return a payment link.")

    async def _open_payment(self, telegram_id: int, plan: Plan, passed: int | None) -> tuple[dict[str, Any], bool]:
        """The person's newest payment for ``plan`` if it may still be paid (not ``passed``, which turned out not to
        be reusable), or a new row with a new idempotence key: ``(row, created)``. One YooKassa has not answered
        about is asked again for 15 minutes; a pending one is offered again for as long as YooKassa keeps it
        payable (``_reuse`` asks), at the price it was made for if that is still the plan's: two live links for one
        plan could both be paid.

        Looking and creating happen under the person's lock, so two presses at once get one payment: the second
        finds the first's row and asks YooKassa with the same key. The row and its key exist before YooKassa is
        asked, so a lost answer can be retried safely.
        """
        engine = Payment._meta.db
        async with write_transaction(engine):
            await lock_person(telegram_id)
            recent = await (
                Payment.select()
                .where(
                    (Payment.telegram_id == telegram_id)
                    & (Payment.plan == plan.name)
                    & (Payment.created_at >= utcnow() - CHECK_UNTIL)
                )
                .order_by(Payment.created_at, ascending=False)
                .first()
            )
            if recent is not None and recent["id"] != passed and _reusable(recent, plan):
                return recent, False
            now = utcnow()
            row = Payment(
                telegram_id=telegram_id,
                plan=plan.name,
                amount=plan.price,
                days=plan.days,
                currency=CURRENCY,
                status=NEW,
                idempotence_key=str(uuid.uuid4()),
                created_at=now,
                updated_at=now,
            )
            rows = await Payment.insert(row).returning(*Payment.all_columns())
            return rows[0], True

    async def _reuse(self, row: Mapping[str, Any], email: str | None, return_url: str) -> Checkout | None:
        status = row["status"]
        if status in (NEW, ERROR):
            # The create call never answered: ask again with the same key, so YooKassa makes at most one payment.
            plan = self.plans.get(row["plan"])
            if plan is None:
                return None
            offer = self._offer(row, plan)
            try:
                return await self._submit(
                    row["id"], row["idempotence_key"], row["telegram_id"], offer, offer.price, email, return_url
                )
            except PaymentRejected:
                return None
        if status != PENDING or not row["yookassa_id"]:
            return None
        remote = await self.kassa.get_payment(row["yookassa_id"])
        if remote.status == PENDING and remote.confirmation_url:
            return Checkout(remote.id, row["plan"], _decimal(row["amount"]), remote.confirmation_url, reused=True)
        try:
            await self._apply(row, remote)
        except PaymentNotVerified:
            return None  # admins are told; the user gets a fresh payment
        if remote.status == SUCCEEDED:
            # Paid, its notification not here yet: premium is on now, and a second link could be paid as well.
            raise PaymentAlreadyMade(remote.id, await self.subscriptions.premium_until(row["telegram_id"]))
        return None

    async def _with_others(self, checkout: Checkout, telegram_id: int) -> Checkout:
        """``checkout`` naming the plans of the person's other payments that can still be paid: YooKassa cannot
        cancel a pending payment, so the person is told that paying both buys both."""
        rows = await Payment.select(Payment.plan).where(
            (Payment.telegram_id == telegram_id)
            & (Payment.status == PENDING)
            & (Payment.yookassa_id != checkout.payment_id)
            & (Payment.created_at >= utcnow() - CHECK_UNTIL)
        )
        others = tuple(dict.fromkeys(row["plan"] for row in rows))
        return replace(checkout, also_pending=others) if others else checkout

    def _receipt(self, plan: Plan, email: str | None) -> ReceiptSpec | None:
        if not self.settings.receipt_enabled:
            return None
        if not email:
            raise EmailRequired()
        return ReceiptSpec(
            email=email,
            description=self._description(plan),
            vat_code=self.settings.receipt_vat_code,
            tax_system_code=self.settings.receipt_tax_system_code,
        )

    def _description(self, plan: Plan) -> str:
        return f"Премиум «Помогатора» на {plan.days} дн."

    async def _submit(
        self,
        row_id: int,
        key: str,
        telegram_id: int,
        plan: Plan,
        amount: Decimal,
        email: str | None,
        return_url: str,
    ) -> Checkout | None:
        try:
            remote = await self.kassa.create_payment(
                amount=amount,
                currency=CURRENCY,
                description=self._description(plan),
                return_url=return_url,
                metadata={"telegram_id": str(telegram_id), "plan": plan.name},
                idempotence_key=key,
                receipt=self._receipt(plan, email),
            )
        except InvalidEmail:
            # The person's address, not the shop's settings: they are asked for it again; the admins need not act.
            await self._set_status(row_id, FAILED)
            logger.bind(user_id=telegram_id).info(
                "Payment {} for {}: YooKassa refused the receipt's email", row_id, telegram_id
            )
            raise
        except PaymentRejected as exc:
            await self._set_status(row_id, FAILED)
            # Not the person's doing: the shop's keys or settings (receipts required, say). Every purchase fails
            # until an admin acts, so they are told (at most once per alert cooldown).
            alerts.notify(alerts.PAYMENT, f"YooKassa refused to create payment {row_id}: {exc.user_message}")
            raise
        except PaymentProviderUnavailable as exc:
            await self._set_status(row_id, ERROR)
            logger.bind(user_id=telegram_id).warning(
                "Payment {} for {} not created: {}", row_id, telegram_id, exc.user_message
            )
            raise
        # Only a row still waiting for this answer: a slower answer to an earlier press (the same idempotence key,
        # the same payment) must not set a payment that has since succeeded back to pending.
        await Payment.update(
            {
                Payment.yookassa_id: remote.id,
                Payment.status: PENDING if remote.status == PENDING else NEW,
                Payment.confirmation_url: remote.confirmation_url,
                Payment.raw_object: remote.raw,
                Payment.updated_at: utcnow(),
            }
        ).where((payment_pk == row_id) & Payment.status.is_in([NEW, ERROR]))
        logger.bind(user_id=telegram_id).info(
            "Payment {} created for {} ({}, {})", remote.id, telegram_id, plan.name, money(amount)
        )
        if remote.status != PENDING or not remote.confirmation_url:
            row = await Payment.select().where(payment_pk == row_id).first()
            if row is not None:
                await self._apply(row, remote)
            return None
        return Checkout(remote.id, plan.name, amount, remote.confirmation_url, reused=False)

    async def _set_status(self, row_id: int, status: str) -> None:
        await Payment.update({Payment.status: status, Payment.updated_at: utcnow()}).where(
            (payment_pk == row_id) & Payment.status.is_in([NEW, ERROR])
        )

    # --- applying what the API says ---------------------------------------------------------------------------

    async def handle_notification(self, event: str, object_id: str) -> PaymentOutcome | RefundOutcome | None:
        """Act on a YooKassa notification after fetching its object back from the API; None for other events.

        Raises PaymentNotFound (not our payment), PaymentNotVerified (the API does not confirm it; admins are
        told), PaymentProviderUnavailable.
        """
        if event == "payment.succeeded":
            return await self.sync_payment(object_id, claimed_status=SUCCEEDED)
        if event == "payment.canceled":
            return await self.sync_payment(object_id, claimed_status=CANCELED)
        if event == "payment.waiting_for_capture":
            return await self.sync_payment(object_id)
        if event == "refund.succeeded":
            return await self.sync_refund(object_id, claimed_status=SUCCEEDED)
        logger.info("YooKassa notification {} for {} ignored", event, object_id)
        return None

    async def sync_payment(self, payment_id: str, *, claimed_status: str | None = None) -> PaymentOutcome:
        """Fetch the payment from YooKassa and apply its state: a verified ``succeeded`` activates premium once,
        ``canceled`` is recorded and explained to the user. ``claimed_status`` is what a notification said.

        Raises PaymentNotFound, PaymentNotVerified, PaymentProviderUnavailable.
        """
        row = await self._row(payment_id)
        remote = await self.kassa.get_payment(payment_id)
        outcome = await self._apply(row, remote)
        if await self._catch_up_refunds(row, remote):
            outcome = replace(outcome, changed=True, premium_until=None)
        if row["refund_waiting_id"] is not None and await self._settle_waiting_refund(row, row["refund_waiting_id"]):
            outcome = replace(outcome, changed=True, premium_until=None)
        if claimed_status is not None and remote.status != claimed_status:
            claim = f"the notification says {claimed_status}, the API says {remote.status}"
            await self._not_verified(payment_id, claim)
        return outcome

    async def check_waiting(self, payment_ids: list[str]) -> int:
        """Apply what YooKassa says about payments something is still owed for (``waiting_payments``): their
        notification has not come, their payer's notice did not go out, a refund of theirs was pending; returns how
        many changed our records. Stops at the first sign YooKassa is down: the next round asks again."""
        changed = 0
        for payment_id in payment_ids:
            try:
                changed += (await self.sync_payment(payment_id)).changed
            except PaymentNotVerified:
                continue  # admins are told
            except PaymentNotFound:
                # Not this shop's (made with other keys, say): it never settles, and would be asked about every
                # round before the ones after it.
                await self._unknown_to_yookassa(payment_id)
            except PaymentProviderUnavailable as exc:
                logger.warning("Checking waiting payments stopped: {}", exc.user_message)
                break
        if changed:
            logger.info("Checked {} waiting payments: {} settled without a notification", len(payment_ids), changed)
        return changed

    async def _unknown_to_yookassa(self, payment_id: str) -> None:
        failed = (
            await Payment.update({Payment.status: FAILED, Payment.updated_at: utcnow()})
            .where((Payment.yookassa_id == payment_id) & (Payment.status == PENDING))
            .returning(payment_pk)
        )
        if failed:
            logger.warning("YooKassa does not know payment {}: marked failed, not asked about again", payment_id)
            await self._tell_admins(texts.admin_unknown_payment(payment_id))

    async def _row(self, payment_id: str) -> dict[str, Any]:
        row = await Payment.select().where(Payment.yookassa_id == payment_id).first()
        if row is None:
            raise PaymentNotFound(f"Payment {payment_id[:64]} is not one of ours.")
        return row

    async def _not_verified(self, payment_id: str, problem: str) -> NoReturn:
        """Refuse the payment's notification (or check). The admins hear of it once a day per payment and problem:
        YooKassa delivers a refused notification again and again for a day, the ten-minute check asks again."""
        logger.warning("YooKassa payment {} not verified: {}", payment_id, problem)
        now = time.monotonic()
        told = self._told.get((payment_id, problem))
        if told is None or now - told >= RETOLD_AFTER_S:
            if len(self._told) >= TOLD_MEMORY:
                self._told.clear()
            self._told[(payment_id, problem)] = now
            await self._tell_admins(texts.admin_not_verified(payment_id, problem))
        raise PaymentNotVerified(f"Payment {payment_id} not verified: {problem}.")

    async def _apply(self, row: Mapping[str, Any], remote: RemotePayment) -> PaymentOutcome:
        if remote.status == SUCCEEDED:
            return await self._activate(row, remote)
        if remote.status == CANCELED:
            return await self._cancel(row, remote)
        return PaymentOutcome(remote.id, row["telegram_id"], remote.status, changed=False)

    def _mismatch(self, row: Mapping[str, Any], remote: RemotePayment) -> str | None:
        expected = _decimal(row["amount"])
        if remote.id != row["yookassa_id"]:
            return f"the API returned payment {remote.id}"
        if remote.currency != row["currency"] or remote.amount != expected:
            return f"amount {money(remote.amount)} {remote.currency}, expected {money(expected)} {row['currency']}"
        if remote.metadata.get("plan") != row["plan"] or row["plan"] not in self.plans:
            return f"plan {remote.metadata.get('plan')!r}, expected {row['plan']!r}"
        owner = remote.metadata.get("telegram_id", "")
        if row["telegram_id"] is not None and owner != str(row["telegram_id"]):
            return f"telegram_id {owner!r}, expected {row['telegram_id']}"
        if not owner.isdigit():
            return f"telegram_id {owner!r} is not a Telegram id"
        return None

    async def _activate(self, row: Mapping[str, Any], remote: RemotePayment) -> PaymentOutcome:
        problem = self._mismatch(row, remote)
        if problem is not None:
            await Payment.update({Payment.status: UNVERIFIED, Payment.updated_at: utcnow()}).where(
                (payment_pk == row["id"]) & Payment.status.not_in([SUCCEEDED, UNVERIFIED])
            )
            await self._not_verified(remote.id, problem)
        plan = self._offer(row, self.plans[row["plan"]])
        telegram_id = int(remote.metadata["telegram_id"])
        amount = _decimal(row["amount"])
        until: datetime | None = None
        async with self.database.transaction():
            # An erasure takes the person's lock too: it happens wholly before this or wholly after, and the row is
            # read again under the lock, as it may have been unlinked while YooKassa was asked.
            await lock_person(telegram_id)
            now = await Payment.select(Payment.telegram_id).where(payment_pk == row["id"]).first()
            # Paid after the person erased their data (a link opened before): paying is theirs to do, so the payment
            # is theirs again, for the admin commands and for a later erasure to find.
            relink: dict[Column | str, Any] = (
                {Payment.telegram_id: telegram_id} if now is None or now["telegram_id"] is None else {}
            )
            # Exactly once: of any number of replays, concurrent or not, one flips the status and grants.
            claimed = (
                await Payment.update(
                    {
                        Payment.status: SUCCEEDED,
                        Payment.raw_object: remote.raw,
                        Payment.updated_at: utcnow(),
                        # This process tells the payer; another only once the claim lapses (``NOTICE_LEASE``).
                        Payment.notice_claimed_at: utcnow(),
                        **relink,
                    }
                )
                .where((payment_pk == row["id"]) & (Payment.status != SUCCEEDED))
                .returning(Payment.refunded_amount)
            )
            if claimed:
                until = await self.subscriptions.grant(telegram_id, plan.days, plan=plan.name, payment_id=remote.id)
                refunded = max(_decimal(claimed[0]["refunded_amount"]), remote.refunded_amount)
                if refunded > 0:
                    # Refunded before we heard it succeeded: grant, then take the refunded share back at once.
                    await Payment.update({Payment.refunded_amount: refunded}).where(payment_pk == row["id"])
                    until = await self.subscriptions.shorten(remote.id, float(min(refunded / amount, Decimal(1))))
        if not claimed:
            await self._tell_owed(row["id"], plan, amount)
            return PaymentOutcome(remote.id, telegram_id, SUCCEEDED, changed=False)
        if relink:
            await self.users.ensure(telegram_id)
        logger.bind(user_id=telegram_id).info(
            "Payment {} succeeded: premium for {} until {}", remote.id, telegram_id, until
        )
        if until is None:
            await _mark_told(row["id"])  # refunded in full before we heard it succeeded: no premium to tell of
        else:
            await self._tell_payer(row["id"], telegram_id, texts.payment_succeeded(plan.name, amount, until, self.tz))
        if until is not None:
            await self._tell_admins(texts.admin_payment(remote.id, telegram_id, plan.name, amount, until, self.tz))
        return PaymentOutcome(remote.id, telegram_id, SUCCEEDED, changed=True, premium_until=until)

    async def _tell_owed(self, row_id: int, plan: Plan, amount: Decimal) -> None:
        """Tell the payer of a payment recorded before whose notice did not go out, once its last claim has lapsed
        (``NOTICE_LEASE``): the claim taken here makes this process the one that sends it."""
        now = utcnow()
        claimed = (
            await Payment.update({Payment.notice_claimed_at: now})
            .where(
                (payment_pk == row_id)
                & (Payment.status == SUCCEEDED)
                & Payment.notified_at.is_null()
                & (Payment.notice_claimed_at <= now - NOTICE_LEASE)
            )
            .returning(Payment.telegram_id)
        )
        if not claimed or claimed[0]["telegram_id"] is None:
            return
        telegram_id: int = claimed[0]["telegram_id"]
        until = await self.subscriptions.premium_until(telegram_id)
        if until is None:
            await _mark_told(row_id)  # refunded or revoked since: nothing to tell of
            return
        await self._tell_payer(row_id, telegram_id, texts.payment_succeeded(plan.name, amount, until, self.tz))

    async def _tell_payer(self, row_id: int, telegram_id: int, text: str) -> None:
        """Send the payer's notice this process has claimed; marked sent once delivered. Otherwise the claim lapses
        and a later check sends it (``NOTICE_LEASE``)."""
        if await self._tell(telegram_id, text):
            await _mark_told(row_id)

    async def _cancel(self, row: Mapping[str, Any], remote: RemotePayment) -> PaymentOutcome:
        changed = (
            await Payment.update(
                {
                    Payment.status: CANCELED,
                    Payment.cancellation_reason: (remote.cancellation_reason or "")[:64] or None,
                    # Not kept for a person who erased their data: its metadata names them.
                    Payment.raw_object: remote.raw if row["telegram_id"] is not None else None,
                    Payment.updated_at: utcnow(),
                }
            )
            .where((payment_pk == row["id"]) & Payment.status.not_in([SUCCEEDED, CANCELED]))
            .returning(payment_pk)
        )
        telegram_id: int | None = row["telegram_id"]
        if changed:
            logger.bind(user_id=telegram_id).info("Payment {} canceled: {}", remote.id, remote.cancellation_reason)
            # A link left unpaid until it expired is not news: pressing a plan button makes one, and the person may
            # have paid with another since. A payment that was tried and failed is.
            if telegram_id is not None and remote.cancellation_reason != ABANDONED:
                await self._tell(
                    telegram_id, texts.payment_canceled(_decimal(row["amount"]), remote.cancellation_reason)
                )
        return PaymentOutcome(remote.id, telegram_id, CANCELED, changed=bool(changed))

    # --- refunds ----------------------------------------------------------------------------------------------

    async def sync_refund(self, refund_id: str, *, claimed_status: str | None = None) -> RefundOutcome:
        """Fetch the refund and its payment from YooKassa and record the refunded total, shortening premium by
        the refunded share. Raises PaymentNotFound, PaymentNotVerified, PaymentProviderUnavailable."""
        refund = await self.kassa.get_refund(refund_id)
        row = await self._row(refund.payment_id)
        if claimed_status is not None and refund.status != claimed_status:
            await self._not_verified(
                refund.payment_id,
                f"refund {refund.id}: the notification says {claimed_status}, the API says {refund.status}",
            )
        remote = await self.kassa.get_payment(refund.payment_id)
        if remote.status == SUCCEEDED:
            await self._apply(row, remote)
        return await self._record_refund(row, remote, refund)

    async def refund(
        self, payment_id: str, amount: Decimal | None = None, *, email: str | None = None
    ) -> RefundOutcome:
        """Refund ``amount`` (default: all that is left) of a succeeded payment and shorten premium accordingly.
        With receipts on, the refund's receipt goes to ``email``, by default the one the person has stored.

        Raises PaymentNotFound, BillingError (not refundable, bad amount, no email for the receipt), InvalidEmail,
        PaymentProviderUnavailable.
        """
        if amount is not None:
            amount = checked_refund_amount(amount)
        row = await self._row(payment_id)
        remote = await self.kassa.get_payment(payment_id)
        if remote.status != SUCCEEDED:
            raise BillingError(f"Payment {payment_id} is {remote.status}; only succeeded payments can be refunded.")
        await self._apply(row, remote)
        if row["refund_waiting_id"] is not None:
            # One refund followed up at a time (``refund_waiting_id``): the one YooKassa answered as pending settles
            # first, or a second would take its place and it would never be recorded.
            await self._settle_waiting_refund(row, row["refund_waiting_id"])
            row = await self._row(payment_id)
            if row["refund_waiting_id"] is not None:
                raise BillingError(
                    f"Refund {row['refund_waiting_id']} of payment {payment_id} is still pending at YooKassa; ask "
                    "for another once it has settled (`pomogator payments check` records it then)."
                )
            remote = await self.kassa.get_payment(payment_id)
        unanswered = _unanswered_refund(row)
        if unanswered is not None:
            # Asked before, and YooKassa's answer was lost: the same key again, whatever was refunded since (a
            # refund it made then is in that figure now, and must not be made a second time).
            key, value, asked_at = unanswered
            if amount is not None and amount != value:
                when = asked_at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M %Z")
                raise BillingError(
                    f"A refund of {money(value)} {remote.currency} of payment {payment_id} asked at {when} got no "
                    f"answer from YooKassa and may have been made. Ask for {money(value)} again to finish it "
                    "(YooKassa does not make it twice), then refund more if needed."
                )
        else:
            refundable = remote.amount - remote.refunded_amount
            if refundable <= 0:
                await self._catch_up_refunds(row, remote)
                raise BillingError(
                    f"Payment {payment_id} is already fully refunded ({money(remote.refunded_amount)} "
                    f"{remote.currency})."
                )
            value = refundable if amount is None else amount
            if value > refundable:
                raise BillingError(f"The refund must be between 0.01 and {money(refundable)} {remote.currency}.")
            key = str(uuid.uuid4())
        if not self.settings.receipt_enabled:
            email = None
        elif email is not None:
            email = checked_email(email)
        else:
            email = (await self.users.ensure(row["telegram_id"])).email if row["telegram_id"] is not None else None
            if not email:
                # A refund of a payment with a receipt needs a receipt of its own.
                whose = "the person erased their data" if row["telegram_id"] is None else "the user has none stored"
                raise RefundEmailRequired(
                    f"No email for the refund's receipt: {whose}. Give the address of the payment's receipt "
                    "(YooKassa's dashboard shows it)."
                )
        plan = self.plans.get(row["plan"])
        receipt = None
        if email and plan is not None:
            description = self._description(self._offer(row, plan))
            receipt = ReceiptSpec(
                email, description, self.settings.receipt_vat_code, self.settings.receipt_tax_system_code
            )
        if unanswered is None:
            # Kept before asking: if the answer is lost, asking again reuses it.
            await Payment.update(
                {Payment.refund_key: key, Payment.refund_key_amount: value, Payment.refund_key_at: utcnow()}
            ).where(payment_pk == row["id"])
        try:
            refund = await self.kassa.create_refund(
                payment_id=payment_id,
                amount=value,
                currency=remote.currency,
                idempotence_key=key,
                description="Возврат за премиум «Помогатора»",
                receipt=receipt,
            )
        except (PaymentRejected, PaymentNotFound, InvalidEmail):
            await _forget_refund_key(row["id"], key)  # YooKassa answered: nothing was made
            raise
        await _forget_refund_key(row["id"], key)
        logger.bind(user_id=row["telegram_id"]).info(
            "Refund {} of {} for payment {}: {}", refund.id, money(value), payment_id, refund.status
        )
        if refund.status != SUCCEEDED:
            if refund.status == PENDING:
                # Recorded when YooKassa's refund.succeeded notification arrives, or by the periodic check, which
                # asks about it until it is settled (``waiting_payments``).
                await Payment.update({Payment.refund_waiting_id: refund.id}).where(payment_pk == row["id"])
            return RefundOutcome(payment_id, refund.id, refund.status, value, remote.refunded_amount, changed=False)
        return await self._record_refund(row, await self.kassa.get_payment(payment_id), refund)

    async def _catch_up_refunds(self, row: Mapping[str, Any], remote: RemotePayment) -> bool:
        """Record refunds of a succeeded payment that YooKassa has made and we have not heard of (a refund made in
        its dashboard, or one whose notification was lost); True when there were any."""
        if remote.status != SUCCEEDED or remote.refunded_amount <= _decimal(row["refunded_amount"]):
            return False
        return (await self._record_refund(row, remote, None)).changed

    async def _settle_waiting_refund(self, row: Mapping[str, Any], refund_id: str) -> bool:
        """Ask about a refund YooKassa answered as pending (``refund``): recorded once it succeeded, forgotten once
        canceled (the admins are told: nothing was refunded). True when our records changed."""
        refund = await self.kassa.get_refund(refund_id)
        if refund.status == PENDING:
            return False
        if refund.status == SUCCEEDED:
            return (await self._record_refund(row, await self.kassa.get_payment(refund.payment_id), refund)).changed
        logger.bind(user_id=row["telegram_id"]).warning(
            "Refund {} of payment {} is {}: nothing was refunded", refund.id, refund.payment_id, refund.status
        )
        await _forget_waiting_refund(row["id"], refund_id)
        await self._tell_admins(texts.admin_refund_not_made(refund.id, refund.payment_id, refund.amount))
        return False

    async def _record_refund(
        self, row: Mapping[str, Any], remote: RemotePayment, refund: RemoteRefund | None
    ) -> RefundOutcome:
        total = remote.refunded_amount
        until: datetime | None = None
        async with self.database.transaction():
            # The person's lock before the payment's row, as ``_activate`` and an erasure take them: the other order
            # (the row here, then the lock in ``shorten``) deadlocks with an erasure on PostgreSQL.
            owner = await Payment.select(Payment.telegram_id).where(payment_pk == row["id"]).first()
            if owner is not None and owner["telegram_id"] is not None:
                await lock_person(owner["telegram_id"])
            if refund is not None and refund.status == SUCCEEDED:
                await _forget_waiting_refund(row["id"], refund.id)  # recorded now: not asked about again
            query = Payment.select(Payment.status, Payment.amount, Payment.refunded_amount).where(
                payment_pk == row["id"]
            )
            if not self.database.is_sqlite:
                query = query.lock_rows()  # SQLite's BEGIN IMMEDIATE already serialises writers
            current = await query.first()
            before = _decimal(current["refunded_amount"]) if current else total
            if current is not None and total > before:
                await Payment.update({Payment.refunded_amount: total, Payment.updated_at: utcnow()}).where(
                    payment_pk == row["id"]
                )
                if current["status"] == SUCCEEDED:
                    left = _decimal(current["amount"]) - before
                    share = (total - before) / left if left > 0 else Decimal(1)
                    await self.subscriptions.shorten(remote.id, float(min(share, Decimal(1))))
        refund_id = refund.id if refund else None
        if total <= before:
            return RefundOutcome(remote.id, refund_id, SUCCEEDED, Decimal(0), total, changed=False)
        delta = total - before
        telegram_id: int | None = row["telegram_id"]
        logger.bind(user_id=row["telegram_id"]).info(
            "Payment {} refunded {} (total {})", remote.id, money(delta), money(total)
        )
        if telegram_id is not None:
            until = await self.subscriptions.premium_until(telegram_id)
            await self._tell(telegram_id, texts.refund_done(delta, until, self.tz))
        await self._tell_admins(texts.admin_refund(remote.id, telegram_id, delta, total))
        return RefundOutcome(remote.id, refund_id, SUCCEEDED, delta, total, changed=True, premium_until=until)

    # --- telling people ---------------------------------------------------------------------------------------

    async def _tell(self, chat_id: int, text: str) -> bool:
        """Send a notice; False when it failed in a way that sending it again may mend. A notice that cannot be
        delivered never undoes what was recorded."""
        if self.notifier is None:
            logger.bind(**about(chat_id)).warning("No bot token: notice to {} not sent", chat_id)
            return True
        try:
            result = await self.notifier.send(chat_id, text)
        except Exception as exc:
            # Only the type: an HTTP error's text may carry the Bot API URL, which holds the token.
            logger.bind(**about(chat_id)).warning("Notice to {} failed: {}", chat_id, type(exc).__name__)
            return False
        return result.ok or result.blocked

    async def _tell_admins(self, text: str) -> None:
        for admin_id in self.settings.admin_id_list:
            await self._tell(admin_id, text)
