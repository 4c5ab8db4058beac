"""Premium sold through YooKassa: checkout and applying what the payment API says (refunds: ``RefundService``).

A notification from YooKassa is only a hint: every state change is fetched back from the API by id and checked
against the payment row we stored before asking YooKassa to create it. The bot (pressing a plan), the web app
(the webhook) and the CLI (``payments check`` / ``refund``) all go through the methods here.

Payment row statuses: ``new`` (stored before the create call), ``error`` (the call failed without a definite
answer — the next press retries it with the same idempotence key), ``failed`` (YooKassa refused it), then
YooKassa's ``pending`` / ``succeeded`` / ``canceled``, and ``unverified`` (the API's answer did not match the row;
admins are told).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from loguru import logger

from pomogator.billing import texts
from pomogator.billing.models import (
    CANCELED,
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
    PaymentStatusUnknown,
    PaymentUnderReview,
)
from pomogator.logs import alerts
from pomogator.services.billing_notices import BillingNotices, Notifier
from pomogator.services.notice_claims import claim_payer_notice, mark_told, owe_admins
from pomogator.services.payments import (
    CHECK_UNTIL,
    CURRENCY,
    Plan,
    current_owner,
    offered,
    payment_pk,
    payment_row,
    receipt_description,
    stored_money,
)
from pomogator.services.refunds import RefundOutcome, RefundService
from pomogator.services.subscriptions import SubscriptionService, lock_person
from pomogator.services.users import UserService
from pomogator.store.engine import Database, write_transaction
from pomogator.store.tables import Payment
from pomogator.timeutil import as_utc, utcnow

if TYPE_CHECKING:
    from piccolo.columns import Column
    from piccolo.custom_types import Combinable

    from pomogator.billing.yookassa import YooKassaClient

# YooKassa's cancellation reason for a payment whose page was left without paying until it expired.
ABANDONED = "expired_on_confirmation"
REUSE_WINDOW = timedelta(minutes=15)


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
    # Refunded before we heard the payment succeeded, recorded (and told of) as this call activated it.
    refunded: Decimal = Decimal(0)
    # The refund YooKassa had answered as pending, canceled since: nothing was refunded (it is no longer waited for).
    refund_canceled: RemoteRefund | None = None


def _reusable(row: Mapping[str, Any], plan: Plan) -> bool:
    """Whether ``_open_payment`` offers ``row`` again rather than a new payment (see there)."""
    if row["status"] == PENDING:
        # A link pays what it was made with: offered again only while the plan is still that (an operator may have
        # changed the price or the days since).
        return offered(row, plan) == plan
    return row["status"] in (NEW, ERROR) and as_utc(row["created_at"]) >= utcnow() - REUSE_WINDOW


async def _update_by_owner(values: dict[Column | str, Any], where: Combinable, raw_object: Any) -> list[dict[str, Any]]:
    """Update the payment row ``where`` selects with ``values``, and with YooKassa's object ``raw_object`` (its
    metadata names the person) only while the row is linked to its person; returns the row's ``telegram_id`` as
    written (none when ``where`` matched nothing). Each statement decides by the row as it is then: one an erasure
    unlinked while YooKassa was asked gets no object, and its person is not named."""
    linked = (
        await Payment.update({**values, Payment.raw_object: raw_object})
        .where(where & Payment.telegram_id.is_not_null())
        .returning(Payment.telegram_id)
    )
    if linked:
        return linked
    # Unlinked rows stay unlinked (only ``_activate`` links one again, under the person's lock, to a succeeded
    # payment, which ``where`` leaves out here).
    unlinked: list[dict[str, Any]] = (
        await Payment.update({**values, Payment.raw_object: None})
        .where(where & Payment.telegram_id.is_null())
        .returning(Payment.telegram_id)
    )
    return unlinked


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
        self.settings = settings
        self.tz = settings.tz
        self.plans: dict[str, Plan] = {
            "month": Plan("month", settings.price_month_rub, settings.month_days),
            "year": Plan("year", settings.price_year_rub, settings.year_days),
        }
        self.notices = BillingNotices(notifier, settings.admin_id_list, subscriptions, settings.tz)
        self.refunds = RefundService(
            database, kassa, users, subscriptions, self.notices, settings, self.plans, apply=self.apply
        )

    def plan(self, name: str) -> Plan:
        try:
            return self.plans[name]
        except KeyError:
            raise BillingError(f"Unknown plan {name!r}; plans: {', '.join(self.plans)}.") from None

    # --- checkout ---------------------------------------------------------------------------------------------

    def needs_email(self, email: str | None) -> bool:
        """Whether a payment asks for the payer's e-mail first: receipts are on and none is stored (``email``)."""
        return self.settings.receipt_enabled and not email

    async def start_payment(self, telegram_id: int, plan_name: str, *, bot_link: str = "") -> Checkout:
        """A payment link for ``plan_name``: one for the same plan that can still be paid is offered again
        (``_open_payment``).
        The payer comes back to ``POMOGATOR_PAYMENT_RETURN_URL``, by default to ``bot_link`` (the bot's t.me link).

        Raises EmailRequired (receipts are on and no email is stored), InvalidEmail (YooKassa refused the stored
        one for the receipt), PaymentAlreadyMade (the payment it would offer again was paid meanwhile),
        PaymentStatusUnknown (YooKassa could not say whether the link handed out before was paid),
        PaymentUnderReview (the person's payment for the plan was not verified and waits for the admins),
        PaymentProviderUnavailable (no link was handed out, so nothing was charged; pressing again retries with the
        same idempotence key), PaymentRejected, UserNotFound.
        """
        plan = self.plan(plan_name)
        account = await self.users.get(telegram_id)
        if self.needs_email(account.email):
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
        payable (``_reuse`` asks), if its price and days are still the plan's: two live links for one
        plan could both be paid.

        Looking and creating happen under the person's lock, so two presses at once get one payment: the second
        finds the first's row and asks YooKassa with the same key. The row and its key exist before YooKassa is
        asked, so a lost answer can be retried safely.

        Raises PaymentUnderReview when the newest is a paid payment that was not verified and has not been refunded:
        the person's money is with us already, and the admins decide (a refund lifts it, and so do two days).
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
            if recent is not None and recent["status"] == UNVERIFIED and stored_money(recent["refunded_amount"]) == 0:
                raise PaymentUnderReview(recent["yookassa_id"])
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
            offer = offered(row, plan)
            try:
                return await self._submit(
                    row["id"], row["idempotence_key"], row["telegram_id"], offer, offer.price, email, return_url
                )
            except PaymentRejected:
                return None
        if status != PENDING or not row["yookassa_id"]:
            return None
        remote = await self._payable(row)
        if remote.status == PENDING and remote.confirmation_url:
            return Checkout(remote.id, row["plan"], stored_money(row["amount"]), remote.confirmation_url, reused=True)
        try:
            await self.apply(row, remote)
        except PaymentNotVerified:
            # Paid, but not as we made it (the admins are told): a fresh link could be paid a second time.
            raise PaymentUnderReview(remote.id) from None
        if remote.status == SUCCEEDED:
            # Paid, its notification not here yet: premium is on now, and a second link could be paid as well.
            raise PaymentAlreadyMade(remote.id, await self.subscriptions.premium_until(row["telegram_id"]))
        return None

    async def _payable(self, row: Mapping[str, Any]) -> RemotePayment:
        """The pending payment ``row`` as YooKassa has it now. Its link was handed out and may have been paid, so
        when YooKassa cannot say, the person must not hear that nothing was charged. Raises PaymentStatusUnknown,
        PaymentNotFound."""
        try:
            return await self.kassa.get_payment(row["yookassa_id"])
        except PaymentProviderUnavailable as exc:
            if isinstance(exc, PaymentRejected):
                # The shop's keys or settings: no payment can be checked (or made) until an admin acts.
                what = f"YooKassa refused the status check of payment {row['id']}: {exc.user_message}"
                alerts.notify(alerts.PAYMENT, what)
            else:
                logger.bind(user_id=row["telegram_id"]).warning(
                    "Payment {} of {} not checked: {}", row["id"], row["telegram_id"], exc.user_message
                )
            raise PaymentStatusUnknown(f"Payment {row['yookassa_id']} not checked: {exc.user_message}") from exc

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
            description=receipt_description(plan),
            vat_code=self.settings.receipt_vat_code,
            tax_system_code=self.settings.receipt_tax_system_code,
        )

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
                description=receipt_description(plan),
                return_url=return_url,
                metadata={"telegram_id": str(telegram_id), "plan": plan.name},
                idempotence_key=key,
                receipt=self._receipt(plan, email),
            )
        except InvalidEmail:
            # The person's address, not the shop's settings: they are asked for it again; the admins need not act.
            owner = await self._set_status(row_id, FAILED)
            logger.bind(user_id=owner).info("Payment {}: YooKassa refused the receipt's email", row_id)
            raise
        except PaymentRejected as exc:
            await self._set_status(row_id, FAILED)
            # Not the person's doing: the shop's keys or settings (receipts required, say). Every purchase fails
            # until an admin acts, so they are told (at most once per alert cooldown).
            alerts.notify(alerts.PAYMENT, f"YooKassa refused to create payment {row_id}: {exc.user_message}")
            raise
        except PaymentProviderUnavailable as exc:
            owner = await self._set_status(row_id, ERROR)
            logger.bind(user_id=owner).warning("Payment {} not created: {}", row_id, exc.user_message)
            raise
        # Only a row still waiting for this answer: a slower answer to an earlier press (the same idempotence key,
        # the same payment) must not set a payment that has since succeeded back to pending.
        values: dict[Column | str, Any] = {
            Payment.yookassa_id: remote.id,
            Payment.status: PENDING if remote.status == PENDING else NEW,
            Payment.confirmation_url: remote.confirmation_url,
            Payment.updated_at: utcnow(),
        }
        # YooKassa's object names the person: not kept when they erased their data while it was being asked for.
        stored = await _update_by_owner(values, (payment_pk == row_id) & Payment.status.is_in([NEW, ERROR]), remote.raw)
        if stored and stored[0]["telegram_id"] is None:
            # The link is still handed out: paying it is the person's to do (``_activate`` links the payment again).
            logger.info("Payment {} created for a person who erased their data meanwhile", remote.id)
        else:
            logger.bind(user_id=telegram_id).info(
                "Payment {} created for {} ({}, {})", remote.id, telegram_id, plan.name, money(amount)
            )
        if remote.status != PENDING or not remote.confirmation_url:
            row = await Payment.select().where(payment_pk == row_id).first()
            if row is not None:
                await self.apply(row, remote)
            return None
        return Checkout(remote.id, plan.name, amount, remote.confirmation_url, reused=False)

    async def _set_status(self, row_id: int, status: str) -> int | None:
        """Set the status of a payment YooKassa has not made; returns whom the payment belongs to now (None once
        they erased their data, as they may have while YooKassa was asked)."""
        updated = (
            await Payment.update({Payment.status: status, Payment.updated_at: utcnow()})
            .where((payment_pk == row_id) & Payment.status.is_in([NEW, ERROR]))
            .returning(Payment.telegram_id)
        )
        if updated:
            owner: int | None = updated[0]["telegram_id"]
            return owner
        return await current_owner(row_id)

    # --- applying what the API says ---------------------------------------------------------------------------

    async def handle_notification(
        self, event: str, object_id: str, *, payment_id: str | None = None
    ) -> PaymentOutcome | RefundOutcome | None:
        """Act on a YooKassa notification after fetching its object back from the API; None for other events.
        ``payment_id`` is the payment a refund's notification names: not ours, it is not asked about.

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
            return await self.refunds.sync(object_id, claimed_status=SUCCEEDED, payment_id=payment_id)
        logger.info("YooKassa notification {} for {} ignored", event, object_id)
        return None

    async def sync_payment(self, payment_id: str, *, claimed_status: str | None = None) -> PaymentOutcome:
        """Fetch the payment from YooKassa and apply its state: a verified ``succeeded`` activates premium once,
        ``canceled`` is recorded and explained to the user. ``claimed_status`` is what a notification said. Refunds
        YooKassa made are recorded, those of a payment that is not verified too (before PaymentNotVerified).

        Raises PaymentNotFound, PaymentNotVerified, PaymentProviderUnavailable.
        """
        row = await payment_row(payment_id)
        remote = await self.kassa.get_payment(payment_id)
        try:
            outcome = await self.apply(row, remote)
        except PaymentNotVerified:
            # Never premium for it; but its refund, the remedy, is recorded all the same: the admins hear of it, and
            # the person may buy the plan again (``_open_payment``).
            await self._settle_refunds(row, remote)
            raise
        changed, canceled = await self._settle_refunds(row, remote)
        if changed:
            outcome = replace(outcome, changed=True, premium_until=None)
        if canceled is not None:
            outcome = replace(outcome, refund_canceled=canceled)
        if claimed_status is not None and remote.status != claimed_status:
            claim = f"the notification says {claimed_status}, the API says {remote.status}"
            await self.notices.not_verified(payment_id, claim)
        return outcome

    async def _settle_refunds(self, row: Mapping[str, Any], remote: RemotePayment) -> tuple[bool, RemoteRefund | None]:
        """Record the payment's refunds YooKassa made that we have not heard of, and the one it answered as pending
        once settled. Returns whether our records changed, and the pending refund YooKassa has canceled since."""
        changed = await self.refunds.catch_up(row, remote)
        if row["refund_waiting_id"] is None:
            return changed, None
        settled = await self.refunds.settle_waiting(row, row["refund_waiting_id"])
        return changed or settled.changed, settled.refund if settled.canceled else None

    async def check_waiting(self, payment_ids: list[str]) -> int:
        """Apply what YooKassa says about payments something is still owed for (``waiting_payments``): their
        notification has not come, their payer's notice did not go out, a refund of theirs was pending, or was asked
        for and not recorded (the refunds YooKassa made are recorded; none is asked for); returns how many changed
        our records. Stops at the first sign YooKassa is down: the next round asks again.

        The admins' notices of payments and refunds that did not go out are sent first, then the payers' notices of
        refunds, from our records alone: they need not wait for YooKassa, and the admins hear of a payment before its
        payer does, as when it was recorded."""
        await self.notices.tell_untold_admins()
        await self.notices.tell_untold_payers()
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
            await self.notices.tell_admins(texts.admin_unknown_payment(payment_id))

    async def apply(self, row: Mapping[str, Any], remote: RemotePayment) -> PaymentOutcome:
        if remote.status == SUCCEEDED:
            return await self._activate(row, remote)
        if remote.status == CANCELED:
            return await self._cancel(row, remote)
        return PaymentOutcome(remote.id, row["telegram_id"], remote.status, changed=False)

    def _mismatch(self, row: Mapping[str, Any], remote: RemotePayment) -> str | None:
        expected = stored_money(row["amount"])
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
        if problem is None and row["status"] == UNVERIFIED:
            # Once found not to match, never premium, though it may seem to match now (the person it was made for
            # erased their data, so the row names no one to compare the metadata with): the admins decide.
            problem = "it did not match our record when it was first checked"
        if problem is not None:
            await Payment.update({Payment.status: UNVERIFIED, Payment.updated_at: utcnow()}).where(
                (payment_pk == row["id"]) & Payment.status.not_in([SUCCEEDED, UNVERIFIED])
            )
            await self.notices.not_verified(remote.id, problem)
        plan = offered(row, self.plans[row["plan"]])
        telegram_id = int(remote.metadata["telegram_id"])
        amount = stored_money(row["amount"])
        until: datetime | None = None
        recorded = refunded = Decimal(0)
        tell_admins = False
        claimed_at = utcnow()  # when this process claimed the admins' notice (``owe_admins``)
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
            # Exactly once: of any number of replays, concurrent or not, one flips the status and grants; none once
            # another found it not verified.
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
                .where((payment_pk == row["id"]) & Payment.status.not_in([SUCCEEDED, UNVERIFIED]))
                .returning(Payment.refunded_amount)
            )
            if claimed:
                until = await self.subscriptions.grant(telegram_id, plan.days, plan=plan.name, payment_id=remote.id)
                recorded = stored_money(claimed[0]["refunded_amount"])
                refunded = max(recorded, remote.refunded_amount)
                if refunded > 0:
                    # Refunded before we heard it succeeded: grant, then take the refunded share back at once.
                    await Payment.update({Payment.refunded_amount: refunded}).where(payment_pk == row["id"])
                    until = await self.subscriptions.shorten(remote.id, float(min(refunded / amount, Decimal(1))))
                # The admins are owed the notice of the payment (and of that refund) until it is sent.
                claimed_at = utcnow()
                tell_admins = await owe_admins(row["id"], claimed_at, refunded_before=recorded, paid_before=False)
        if not claimed:
            # Recorded before, by a process that may have stopped before telling the admins and the payer.
            await self.notices.tell_admins_recorded(row["id"], None)
            await self._tell_owed(row["id"], plan, amount)
            return PaymentOutcome(remote.id, telegram_id, SUCCEEDED, changed=False)
        if relink:
            await self.users.ensure(telegram_id)
        log = logger.bind(user_id=telegram_id)
        log.info("Payment {} succeeded: premium for {} until {}", remote.id, telegram_id, until)
        # The refund's own record (``RefundService``) finds it recorded here: the payer and the admins hear of it
        # with the payment, never of a premium the refund took back.
        newly_refunded = refunded - recorded
        if newly_refunded > 0:
            log.info("Payment {} refunded {} (total {})", remote.id, money(newly_refunded), money(refunded))
        # The admins first (of the payment, then of that refund), then the payer. A notice that does not go out
        # (this process stops first, Telegram fails, the database drops as it is marked sent) is sent by a later
        # check, once the claim taken above lapses; a database error as the admins are told (never raised here: the
        # payment is recorded) leaves theirs to that check and the payer is told all the same.
        if tell_admins:
            await self.notices.tell_admins_recorded(row["id"], claimed_at)
        await self._tell_of_payment(row["id"], telegram_id, plan, amount, refunded, until)
        return PaymentOutcome(
            remote.id, telegram_id, SUCCEEDED, changed=True, premium_until=until, refunded=newly_refunded
        )

    async def _tell_of_payment(
        self, row_id: int, telegram_id: int, plan: Plan, amount: Decimal, refunded: Decimal, until: datetime | None
    ) -> None:
        """Tell the payer of their payment, with its refund if one was made before they were told (the premium it
        bought is not all there, or not there at all): never "premium active" for premium a refund took back."""
        if refunded > 0:
            text = texts.payment_refunded(amount, refunded, until, self.tz)
        elif until is not None:
            text = texts.payment_succeeded(plan.name, amount, until, self.tz)
        else:
            await mark_told(row_id)  # revoked since: nothing to tell of
            return
        await self._tell_payer(row_id, telegram_id, text)

    async def _tell_owed(self, row_id: int, plan: Plan, amount: Decimal) -> None:
        """Tell the payer of a payment recorded before whose notice did not go out, once its last claim has lapsed
        (``NOTICE_LEASE``): the claim taken here makes this process the one that sends it."""
        claimed = await claim_payer_notice(row_id, SUCCEEDED)
        if claimed is None:
            return
        telegram_id: int = claimed["telegram_id"]
        until = await self.subscriptions.premium_until(telegram_id)
        refunded = stored_money(claimed["refunded_amount"])
        await self._tell_of_payment(row_id, telegram_id, plan, amount, refunded, until)

    async def _tell_payer(self, row_id: int, telegram_id: int, text: str) -> None:
        """Send the payer's notice this process has claimed; marked sent once delivered. Otherwise the claim lapses
        and a later check sends it (``NOTICE_LEASE``)."""
        if await self.notices.tell(telegram_id, text):
            await mark_told(row_id)

    async def _cancel(self, row: Mapping[str, Any], remote: RemotePayment) -> PaymentOutcome:
        # A link left unpaid until it expired is not news: pressing a plan button makes one, and the person may have
        # paid with another since. A payment that was tried and failed is, and its payer is owed the notice until it
        # is delivered, as of a payment that went through: this process claims it as it records the failure.
        news = remote.cancellation_reason != ABANDONED
        values: dict[Column | str, Any] = {
            Payment.status: CANCELED,
            Payment.cancellation_reason: (remote.cancellation_reason or "")[:64] or None,
            Payment.updated_at: utcnow(),
            **({Payment.notice_claimed_at: utcnow()} if news else {}),
        }
        unsettled = (payment_pk == row["id"]) & Payment.status.not_in([SUCCEEDED, CANCELED])
        # YooKassa's object is not kept for a person who erased their data (its metadata names them), nor are they
        # told or named in the log: as the row is when written, since ``row`` may have been read before an erasure.
        changed = await _update_by_owner(values, unsettled, remote.raw)
        telegram_id: int | None = changed[0]["telegram_id"] if changed else row["telegram_id"]
        if not changed:
            # Recorded before, by a process that may have stopped before telling the payer, or Telegram failed.
            await self._tell_owed_failure(row["id"])
        else:
            logger.bind(user_id=telegram_id).info("Payment {} canceled: {}", remote.id, remote.cancellation_reason)
            if telegram_id is not None and news:
                text = texts.payment_canceled(stored_money(row["amount"]), remote.cancellation_reason)
                await self._tell_payer(row["id"], telegram_id, text)
        return PaymentOutcome(remote.id, telegram_id, CANCELED, changed=bool(changed))

    async def _tell_owed_failure(self, row_id: int) -> None:
        """Tell the payer of a failed payment recorded before whose notice did not go out, once its last claim has
        lapsed (``NOTICE_LEASE``)."""
        claimed = await claim_payer_notice(row_id, CANCELED)
        if claimed is not None:
            text = texts.payment_canceled(stored_money(claimed["amount"]), claimed["cancellation_reason"])
            await self._tell_payer(row_id, claimed["telegram_id"], text)
