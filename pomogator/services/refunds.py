"""Refunds of premium payments: asking YooKassa for one, following up one it answered as pending, and recording
what it refunded (premium shortened by the refunded share). The CLI (``payments refund``) asks for them; the web app
(a ``refund.succeeded`` notification) and the periodic check record them, through ``BillingService``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol

from loguru import logger

from pomogator.billing import texts
from pomogator.billing.models import (
    CENT,
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
    IdempotenceConflict,
    InvalidEmail,
    PaymentNotFound,
    PaymentNotVerified,
    PaymentRejected,
    RefundEmailRequired,
    UserNotFound,
)
from pomogator.services.billing_notices import BillingNotices
from pomogator.services.notice_claims import owe_admins, owe_payer_refund
from pomogator.services.payments import (
    REFUND_KEY_LIFETIME,
    Plan,
    current_owner,
    forget_waiting_refund,
    offered,
    payment_pk,
    payment_row,
    receipt_description,
    stored_money,
)
from pomogator.services.subscriptions import SubscriptionService, lock_person
from pomogator.services.users import UserService, checked_email
from pomogator.store.engine import Database
from pomogator.store.tables import Payment
from pomogator.timeutil import as_utc, utcnow

if TYPE_CHECKING:
    from piccolo.columns import Column

    from pomogator.billing.yookassa import YooKassaClient


class Applied(Protocol):
    """What applying a payment did (``BillingService.PaymentOutcome``)."""

    @property
    def premium_until(self) -> datetime | None: ...

    # Refunded before we heard the payment succeeded: recorded, and told of, as it was applied.
    @property
    def refunded(self) -> Decimal: ...


# Records a succeeded payment YooKassa reports before it is refunded (``BillingService.apply``).
ApplyPayment = Callable[[Mapping[str, Any], RemotePayment], Awaitable[Applied]]


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
class Settled:
    """A refund YooKassa answered as pending, asked about again (``RefundService.settle_waiting``)."""

    refund: RemoteRefund
    # Our records changed: it succeeded, and was recorded now.
    changed: bool

    @property
    def canceled(self) -> bool:
        """It will never be made: nothing was refunded (the admins are told)."""
        return self.refund.status not in (PENDING, SUCCEEDED)


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


def _unanswered_refund(row: Mapping[str, Any]) -> tuple[str, Decimal, datetime] | None:
    """The key, amount and time of the payment's refund asked for and not recorded (its answer was lost, or what
    came after it failed), while YooKassa still knows the key."""
    key, asked_at = row["refund_key"], row["refund_key_at"]
    if key is None or asked_at is None or as_utc(asked_at) <= utcnow() - REFUND_KEY_LIFETIME:
        return None
    return key, stored_money(row["refund_key_amount"]), as_utc(asked_at)


async def _forget_refund_key(row_id: int, key: str, *, keep_amount: bool = False) -> None:
    values: dict[Column | str, Any] = {Payment.refund_key: None, Payment.refund_key_at: None}
    if not keep_amount:
        values[Payment.refund_key_amount] = None
    await Payment.update(values).where((payment_pk == row_id) & (Payment.refund_key == key))


class RefundService:
    def __init__(
        self,
        database: Database,
        kassa: YooKassaClient,
        users: UserService,
        subscriptions: SubscriptionService,
        notices: BillingNotices,
        settings: Settings,
        plans: Mapping[str, Plan],
        apply: ApplyPayment,
    ) -> None:
        self.database = database
        self.kassa = kassa
        self.users = users
        self.subscriptions = subscriptions
        self.notices = notices
        self.settings = settings
        self.plans = plans
        self.apply = apply

    async def sync(
        self, refund_id: str, *, claimed_status: str | None = None, payment_id: str | None = None
    ) -> RefundOutcome:
        """Fetch the refund and its payment from YooKassa and record the refunded total, shortening premium by
        the refunded share. ``payment_id``, the payment a notification says the refund is of, is looked up first:
        a notification about another shop's payment, or a made-up one, costs no call to YooKassa. Raises
        PaymentNotFound, PaymentNotVerified (the notification's claim is not what the API says),
        PaymentProviderUnavailable."""
        if payment_id is not None:
            await payment_row(payment_id)
        refund = await self.kassa.get_refund(refund_id)
        row = await payment_row(refund.payment_id)
        if claimed_status is not None and refund.status != claimed_status:
            await self.notices.not_verified(
                refund.payment_id,
                f"refund {refund.id}: the notification says {claimed_status}, the API says {refund.status}",
            )
        remote = await self.kassa.get_payment(refund.payment_id)
        applied = await self._apply(row, remote)
        outcome = await self._record(row, remote, refund)
        if applied is not None and applied.refunded > 0:
            # The payment's success had not been heard of: the refund was recorded with it just now.
            return replace(outcome, amount=applied.refunded, changed=True, premium_until=applied.premium_until)
        return outcome

    async def refund(
        self,
        payment_id: str,
        amount: Decimal | None = None,
        *,
        email: str | None = None,
        asking: Callable[[], object] | None = None,
    ) -> RefundOutcome:
        """Refund ``amount`` (default: all that is left) of a succeeded payment and shorten premium accordingly.
        With receipts on, the refund's receipt goes to ``email``, by default the one the person has stored.

        A refund YooKassa does not make at once comes back with its status: ``pending`` is recorded once it
        succeeds; ``canceled`` refunded nothing (the admins are told).

        Runs at once (in any processes) ask with one idempotence key, so YooKassa makes one refund for them: the first
        to store its key asks with it, and the others find it and ask with it too, or are refused when they ask for
        another amount, or when it was answered before they found it.

        ``asking`` is called right before YooKassa is asked for the refund: from then on, the refund may have been
        made whatever happens to this call (the CLI says so when it is interrupted).

        Raises PaymentNotFound, BillingError (not refundable, bad amount, no email for the receipt, another refund
        asked for at once), InvalidEmail, PaymentProviderUnavailable.
        """
        if amount is not None:
            amount = checked_refund_amount(amount)
        return await self._refund(payment_id, amount, email, asking)

    async def _refund(
        self,
        payment_id: str,
        amount: Decimal | None,
        email: str | None,
        asking: Callable[[], object] | None,
        *,
        raced: bool = False,
    ) -> RefundOutcome:
        """``refund``; ``raced``: looked at again because another run stored its key first."""
        row = await payment_row(payment_id)
        remote = await self.kassa.get_payment(payment_id)
        if remote.status != SUCCEEDED:
            raise BillingError(f"Payment {payment_id} is {remote.status}; only succeeded payments can be refunded.")
        await self._apply(row, remote)
        # Read again after applying it (which records a refund made before its success was heard): a refund's key is
        # stored only while the payment's refunds are as this run last read them (``_keep_refund_key``).
        row = await payment_row(payment_id)
        if row["refund_waiting_id"] is not None:
            # One refund followed up at a time (``refund_waiting_id``): the one YooKassa answered as pending settles
            # first, or a second would take its place and it would never be recorded.
            await self.settle_waiting(row, row["refund_waiting_id"])
            row = await payment_row(payment_id)
            if row["refund_waiting_id"] is not None:
                raise BillingError(
                    f"Refund {row['refund_waiting_id']} of payment {payment_id} is still pending at YooKassa; ask "
                    "for another once it has settled (`pomogator payments check` records it then)."
                )
            remote = await self.kassa.get_payment(payment_id)
        unanswered = _unanswered_refund(row)
        if unanswered is not None:
            # Asked before and not recorded: the same key again, whatever was refunded since (a refund it made then
            # is in that figure now, and must not be made a second time).
            key, value, asked_at = unanswered
            if amount is not None and amount != value:
                raise BillingError(
                    f"A refund of {money(value)} {remote.currency} of payment {payment_id} asked at "
                    f"{self._local(asked_at)} was not recorded (YooKassa's answer was lost, or what came after it "
                    "failed, or another run is asking for it right now) and may have been made. Ask for "
                    f"{money(value)} again to finish it (YooKassa does not make it twice), then refund more if needed."
                )
        else:
            refundable = remote.amount - remote.refunded_amount
            if refundable <= 0:
                await self.catch_up(row, remote)
                raise BillingError(
                    f"Payment {payment_id} is already fully refunded ({money(remote.refunded_amount)} "
                    f"{remote.currency})."
                )
            if raced:
                # The other run's refund was answered meanwhile: what this one asks for may be what it made.
                raise BillingError(
                    f"Another run asked for a refund of payment {payment_id} at the same time as this one, and has "
                    f"been answered (refunded in total now: {money(remote.refunded_amount)} {remote.currency}); this "
                    "run asked for nothing. Check `pomogator payments list`, then run the command again if more is "
                    "to be refunded."
                )
            value = refundable if amount is None else amount
            if value > refundable:
                raise BillingError(f"The refund must be between 0.01 and {money(refundable)} {remote.currency}.")
            key = str(uuid.uuid4())
        receipt = await self._receipt(row, email)
        # Kept before asking: if the answer is lost, asking again reuses it.
        if unanswered is None and not await self._keep_refund_key(row, key, value):
            # Another run asked for a refund of this payment since ``row`` was read. Looked at again, its key is found
            # and asked with (YooKassa answers both runs with one refund); another amount is refused until that
            # refund is recorded, and so is any once it has been answered (the refunded total has changed).
            if raced:
                raise BillingError(
                    f"Other runs are asking for refunds of payment {payment_id} right now; this run asked for nothing. "
                    "Run the command again once they have finished."
                )
            return await self._refund(payment_id, amount, email, asking, raced=True)
        if asking is not None:
            asking()
        try:
            refund = await self.kassa.create_refund(
                payment_id=payment_id,
                amount=value,
                currency=remote.currency,
                idempotence_key=key,
                description="Возврат за премиум «Помогатора»",
                receipt=receipt,
            )
        except IdempotenceConflict as exc:
            if unanswered is None:  # this run's own new key: nothing else used it
                await _forget_refund_key(row["id"], key)
                raise
            # The key was sent before with other details (another receipt address): that request may have made the
            # refund, or be on its way from another run right now. The key is kept, so no new one is made meanwhile.
            raise BillingError(self._conflict_text(payment_id, remote.currency, unanswered, exc)) from None
        except (PaymentRejected, PaymentNotFound, InvalidEmail):
            await _forget_refund_key(row["id"], key)  # YooKassa answered: nothing was made
            raise
        # The key is kept until the refund is recorded, or stored to be waited for: if anything before that fails
        # (YooKassa, the database, the process), the same command asks again with it, and YooKassa answers with this
        # refund instead of making a second one.
        logger.bind(user_id=await current_owner(row["id"])).info(
            "Refund {} of {} for payment {}: {}", refund.id, money(value), payment_id, refund.status
        )
        if refund.status == PENDING:
            # Recorded when YooKassa's refund.succeeded notification arrives, or by the periodic check, which asks
            # about it until it is settled (``waiting_payments``).
            async with self.database.transaction():
                await Payment.update({Payment.refund_waiting_id: refund.id}).where(payment_pk == row["id"])
                # The key goes; its amount stays, the waited-for refund's (``forget_waiting_refund`` clears it).
                await _forget_refund_key(row["id"], key, keep_amount=True)
        elif refund.status != SUCCEEDED:
            # Canceled at once (the shop's balance, the bank): it never succeeds, so there is nothing to wait for.
            await _forget_refund_key(row["id"], key)
            await self.notices.tell_admins(texts.admin_refund_not_made(refund.id, payment_id, value))
        if refund.status != SUCCEEDED:
            return RefundOutcome(payment_id, refund.id, refund.status, value, remote.refunded_amount, changed=False)
        return await self._record(row, await self.kassa.get_payment(payment_id), refund, key=key)

    def _conflict_text(
        self, payment_id: str, currency: str, unanswered: tuple[str, Decimal, datetime], exc: IdempotenceConflict
    ) -> str:
        _, value, asked_at = unanswered
        return (
            f"{exc.user_message} A refund of {money(value)} {currency} of payment {payment_id} asked for at "
            f"{self._local(asked_at)} with other details (the receipt's email) was not recorded and may have been "
            "made, or another run is asking for it right now. Run the command again with the same email as then to "
            f"finish it; after {self._local(asked_at + REFUND_KEY_LIFETIME)} a new refund can be asked for."
        )

    def _local(self, moment: datetime) -> str:
        return moment.astimezone(self.settings.tz).strftime("%Y-%m-%d %H:%M %Z")

    async def _keep_refund_key(self, row: Mapping[str, Any], key: str, value: Decimal) -> bool:
        """Store the idempotence ``key`` of a refund of ``value`` about to be asked for, unless the payment's refunds
        changed since ``row`` was read: another run stored its key (it is asking YooKassa now, or its answer was
        lost), or stored one and recorded its refund or its wait for it. True when stored. Compared, never
        overwritten: two runs at once would ask with two keys, and YooKassa would make two refunds."""
        async with self.database.transaction():
            query = Payment.select(Payment.refund_key, Payment.refund_waiting_id, Payment.refunded_amount).where(
                payment_pk == row["id"]
            )
            if not self.database.is_sqlite:
                query = query.lock_rows()  # SQLite's BEGIN IMMEDIATE already serialises writers
            now = await query.first()
            if now is None or any(now[name] != row[name] for name in ("refund_key", "refund_waiting_id")):
                return False
            if stored_money(now["refunded_amount"]) != stored_money(row["refunded_amount"]):
                return False
            await Payment.update(
                {Payment.refund_key: key, Payment.refund_key_amount: value, Payment.refund_key_at: utcnow()}
            ).where(payment_pk == row["id"])
            return True

    async def _apply(self, row: Mapping[str, Any], remote: RemotePayment) -> Applied | None:
        """Record a succeeded payment before its refund, unless it does not match our row (``PaymentNotVerified``,
        the admins are told): then it never gives premium, and its refund, the remedy, is made and recorded as
        YooKassa has the payment (``_record`` shortens no premium of a payment that is not succeeded)."""
        if remote.status != SUCCEEDED or row["status"] == UNVERIFIED:
            return None
        try:
            return await self.apply(row, remote)
        except PaymentNotVerified:
            return None

    async def _receipt(self, row: Mapping[str, Any], email: str | None) -> ReceiptSpec | None:
        """The refund's receipt when receipts are on: a refund of a payment with a receipt needs one of its own.
        Raises RefundEmailRequired, InvalidEmail."""
        if not self.settings.receipt_enabled:
            return None
        erased = row["telegram_id"] is None
        if email is not None:
            email = checked_email(email)
        elif not erased:
            # Read, never created: the person may have erased their data since ``row`` was read.
            try:
                email = (await self.users.get(row["telegram_id"])).email
            except UserNotFound:
                erased = True
        if not email:
            whose = "the person erased their data" if erased else "the user has none stored"
            raise RefundEmailRequired(
                f"No email for the refund's receipt: {whose}. Give the address of the payment's receipt "
                "(YooKassa's dashboard shows it)."
            )
        plan = self.plans.get(row["plan"])
        if plan is None:
            return None
        return ReceiptSpec(
            email,
            receipt_description(offered(row, plan)),
            self.settings.receipt_vat_code,
            self.settings.receipt_tax_system_code,
        )

    async def catch_up(self, row: Mapping[str, Any], remote: RemotePayment) -> bool:
        """Record refunds of a succeeded payment that YooKassa has made and we have not heard of (a refund made in
        its dashboard, or one whose notification was lost); True when there were any. A payment that is not verified
        has them recorded too, shortening no premium (it gave none)."""
        if remote.status != SUCCEEDED or remote.refunded_amount <= stored_money(row["refunded_amount"]):
            return False
        return (await self._record(row, remote, None)).changed

    async def settle_waiting(self, row: Mapping[str, Any], refund_id: str) -> Settled:
        """Ask about a refund YooKassa answered as pending (``refund``): recorded once it succeeded, forgotten once
        canceled (the admins are told: nothing was refunded)."""
        refund = await self.kassa.get_refund(refund_id)
        if refund.status == PENDING:
            return Settled(refund, changed=False)
        if refund.status == SUCCEEDED:
            recorded = await self._record(row, await self.kassa.get_payment(refund.payment_id), refund)
            return Settled(refund, changed=recorded.changed)
        logger.bind(user_id=await current_owner(row["id"])).warning(
            "Refund {} of payment {} is {}: nothing was refunded", refund.id, refund.payment_id, refund.status
        )
        await forget_waiting_refund(row["id"], refund_id)
        await self.notices.tell_admins(texts.admin_refund_not_made(refund.id, refund.payment_id, refund.amount))
        return Settled(refund, changed=False)

    async def _record(
        self, row: Mapping[str, Any], remote: RemotePayment, refund: RemoteRefund | None, *, key: str | None = None
    ) -> RefundOutcome:
        """Record what YooKassa has refunded of the payment: ``remote`` as fetched after ``refund`` (the one this
        process asked for with idempotence ``key``, forgotten as it is recorded)."""
        total = remote.refunded_amount
        until: datetime | None = None
        tell_admins = tell_payer = False
        claimed_at = utcnow()  # when this process claimed the notices (``owe_admins``, ``owe_payer_refund``)
        async with self.database.transaction():
            # The person's lock before the payment's row, as ``BillingService`` and an erasure take them: the other
            # order (the row here, then the lock in ``shorten``) deadlocks with an erasure on PostgreSQL.
            owner = await Payment.select(Payment.telegram_id).where(payment_pk == row["id"]).first()
            if owner is not None and owner["telegram_id"] is not None:
                await lock_person(owner["telegram_id"])
            if refund is not None and refund.status == SUCCEEDED:
                await forget_waiting_refund(row["id"], refund.id)  # recorded now: not asked about again
            if key is not None:
                await _forget_refund_key(row["id"], key)  # recorded now: asking again makes a new refund
            # Whom the refund is told to is read here, after the lock: an erasure while YooKassa was asked unlinked
            # the payment from the person ``row`` names.
            query = Payment.select(Payment.telegram_id, Payment.status, Payment.amount, Payment.refunded_amount).where(
                payment_pk == row["id"]
            )
            if not self.database.is_sqlite:
                query = query.lock_rows()  # SQLite's BEGIN IMMEDIATE already serialises writers
            current = await query.first()
            before = stored_money(current["refunded_amount"]) if current else total
            if current is not None and total > before:
                await Payment.update({Payment.refunded_amount: total, Payment.updated_at: utcnow()}).where(
                    payment_pk == row["id"]
                )
                if current["status"] == SUCCEEDED:
                    left = stored_money(current["amount"]) - before
                    share = (total - before) / left if left > 0 else Decimal(1)
                    await self.subscriptions.shorten(remote.id, float(min(share, Decimal(1))))
                # The admins and the payer are owed the notice of the refund until it is sent.
                claimed_at = utcnow()
                tell_admins = await owe_admins(
                    row["id"], claimed_at, refunded_before=before, paid_before=current["status"] == SUCCEEDED
                )
                tell_payer = await owe_payer_refund(row["id"], claimed_at, refunded_before=before)
        refund_id = refund.id if refund else None
        if total <= before:
            return RefundOutcome(remote.id, refund_id, SUCCEEDED, Decimal(0), total, changed=False)
        delta = total - before
        telegram_id: int | None = current["telegram_id"] if current else None
        logger.bind(user_id=telegram_id).info(
            "Payment {} refunded {} (total {})", remote.id, money(delta), money(total)
        )
        if telegram_id is not None:
            until = await self.subscriptions.premium_until(telegram_id)
        if tell_payer:
            # Never raises, as the admins' below. A notice that does not go out (Telegram fails, this process stops
            # first) is sent by a later check, once the claim taken above lapses.
            await self.notices.tell_payer_of_refunds(row["id"], claimed_at)
        if tell_admins:
            # Never raises: the refund is made and recorded (``pomogator payments refund`` failing now would have an
            # operator ask for it again).
            await self.notices.tell_admins_recorded(row["id"], claimed_at)
        return RefundOutcome(remote.id, refund_id, SUCCEEDED, delta, total, changed=True, premium_until=until)
