"""The bookkeeping of the notices a payment owes: the payer's of its success or failure and of its refunds, and the
admins' of its success and its refunds. Which process tells them (the claims and their lease, so that two processes
never send one notice), what was told (the marks), and which notices are owed and unclaimed, for the periodic check.
Plain queries on the payment rows (:mod:`pomogator.services.payments`); the messages are sent by
:mod:`pomogator.services.billing_notices`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pomogator.billing.models import CANCELED, SUCCEEDED
from pomogator.services.payments import CHECK_UNTIL, payment_pk, stored_money
from pomogator.store.tables import Payment, PaymentAdminNotice
from pomogator.timeutil import utcnow

if TYPE_CHECKING:
    from piccolo.columns import Column, Numeric, Timestamptz
    from piccolo.custom_types import Combinable

# The payer's notice is claimed by the process that sends it (``Payment.notice_claimed_at``, first in the transaction
# that records the payment, or in the statement that records its failure) and marked sent once delivered. One that
# did not go out (the process stopped before telling them, or Telegram failed) is claimed again by a later check or
# notification once this has passed since the last claim: longer than a send takes at the worst (three tries, each
# waiting out at most 30 s of flood control), so two processes never send it at once.
NOTICE_LEASE = timedelta(minutes=5)


def notices_untold(now: datetime) -> Combinable:
    """Payments owed a notice that did not go out and whose last claim has lapsed, for the periodic check
    (``waiting_payments``): the payer's of the payment (succeeded or failed) or of its refunds, or the admins'."""
    # A failed payment's notice is claimed only when there is news to tell (``BillingService._cancel``).
    payer_untold = (
        Payment.status.is_in([SUCCEEDED, CANCELED])
        & _payer_notice_owed(now)
        & Payment.telegram_id.is_not_null()
        & (Payment.updated_at > now - CHECK_UNTIL)
    )
    return payer_untold | _untold_to_admins(now) | _payer_untold_of_refunds(now)


def _payer_notice_owed(now: datetime) -> Combinable:
    """A payment whose payer's notice did not go out and whose last claim has lapsed (``NOTICE_LEASE``)."""
    return Payment.notified_at.is_null() & (Payment.notice_claimed_at <= now - NOTICE_LEASE)


async def mark_told(row_id: int) -> None:
    """The payer's notice of payment ``row_id`` (its success or its failure) was delivered, or there is nothing to
    tell them (they blocked the bot, their premium was revoked since)."""
    await Payment.update({Payment.notified_at: utcnow()}).where((payment_pk == row_id) & Payment.notified_at.is_null())


async def claim_payer_notice(row_id: int, status: str) -> dict[str, Any] | None:
    """Claim the payer's notice of payment ``row_id`` recorded as ``status`` (succeeded or canceled) whose notice did
    not go out, once its last claim has lapsed (``NOTICE_LEASE``), so that this process is the one that sends it:
    the row as the notice needs it, or None when it is not owed (or is another's to send, or the payer erased their
    data)."""
    now = utcnow()
    claimed = (
        await Payment.update({Payment.notice_claimed_at: now})
        .where((payment_pk == row_id) & (Payment.status == status) & _payer_notice_owed(now))
        .returning(Payment.telegram_id, Payment.amount, Payment.refunded_amount, Payment.cancellation_reason)
    )
    if not claimed or claimed[0]["telegram_id"] is None:
        return None
    row: dict[str, Any] = claimed[0]
    return row


# The admins' notices of a payment (its success, then its refunds) are claimed as the payer's is, with
# ``Payment.admins_claimed_at``: by the process that records what they tell of (``owe_admins``), or by a later check
# or notification once the claim has lapsed (``claim_admins_notice``). The claim is renewed before each message, so it
# never has to outlast more than one send however many admins there are, and let lapse once nothing is left to tell.


def _owed_to_admins() -> Combinable:
    """A payment the admins have not heard all of: its success (unless the payer erased their data since: the notice
    names them), or refunds beyond the total they were told of."""
    paid = (Payment.status == SUCCEEDED) & Payment.admins_notified_at.is_null() & Payment.telegram_id.is_not_null()
    return paid | (Payment.refunded_amount > Payment.admins_told_refunded)


# The claims and the marks of the two notices of refunds (the admins' and the payer's), given the claim's column, the
# column of the refunded total told, and the condition of the notice being owed.


def _claim_lapsed(column: Timestamptz, now: datetime) -> Combinable:
    # NULL is no claim: nothing was ever owed by code that keeps these notices (see ``owe_admins``,
    # ``owe_payer_refund``).
    return column <= now - NOTICE_LEASE


def _never_claimed(column: Timestamptz, row_id: int) -> Combinable:
    return (payment_pk == row_id) & column.is_null()


async def _mark_refunded_before_told(
    told_column: Numeric, claim_column: Timestamptz, row_id: int, refunded_before: Decimal
) -> None:
    """Before the first claim on payment ``row_id`` (``claim_column`` NULL), the refunds recorded so far were told
    by the code that recorded them: ``refunded_before`` is marked told in ``told_column``."""
    await Payment.update({told_column: refunded_before}).where(_never_claimed(claim_column, row_id))


async def _claim_first(column: Timestamptz, owed: Combinable, row_id: int, now: datetime) -> bool:
    """Claim in the transaction that records what is owed: unless another holds the claim."""
    return await _claim(column, owed, row_id, now, column.is_null() | _claim_lapsed(column, now))


async def _claim(column: Timestamptz, owed: Combinable, row_id: int, now: datetime, free: Combinable) -> bool:
    claimed = await Payment.update({column: now}).where((payment_pk == row_id) & free & owed).returning(payment_pk)
    return bool(claimed)


def _untold(owed: Combinable, column: Timestamptz, now: datetime) -> Combinable:
    return owed & _claim_lapsed(column, now) & (Payment.updated_at > now - CHECK_UNTIL)


async def _mark_refunds_told(told_column: Numeric, row_id: int, total: Decimal) -> None:
    await Payment.update({told_column: total}).where((payment_pk == row_id) & (told_column < total))


async def owe_admins(row_id: int, now: datetime, *, refunded_before: Decimal, paid_before: bool) -> bool:
    """In the transaction that records a payment's success or a refund of it: the admins are owed a notice of it,
    and this process claims it unless another holds the claim. True when this process is to tell them
    (``BillingNotices.tell_admins_owed``); otherwise the holder, or the periodic check once the claim lapses, does.

    A payment no claim was ever taken on was recorded by a version that told the admins itself and kept no record
    of it (the migration marks the payments there were then as told; a process of that version still running while
    this one starts may record more): what was recorded before this, ``refunded_before`` and, when ``paid_before``,
    the payment's success, is marked told, so that it is not told again with this."""
    await _mark_refunded_before_told(Payment.admins_told_refunded, Payment.admins_claimed_at, row_id, refunded_before)
    if paid_before:
        await Payment.update({Payment.admins_notified_at: now}).where(
            _never_claimed(Payment.admins_claimed_at, row_id)
            & (Payment.status == SUCCEEDED)
            & Payment.admins_notified_at.is_null()
        )
    return await _claim_first(Payment.admins_claimed_at, _owed_to_admins(), row_id, now)


async def claim_admins_notice(row_id: int, now: datetime) -> bool:
    """Claim the admins' notice of payment ``row_id`` that its recorder did not send (it stopped first, or Telegram
    failed): only once the last claim has lapsed, so two processes never send it, and only while it is owed."""
    column = Payment.admins_claimed_at
    return await _claim(column, _owed_to_admins(), row_id, now, _claim_lapsed(column, now))


async def renew_admins_claim(row_id: int, claim: datetime, now: datetime) -> bool:
    """Renew this process's claim (taken at ``claim``) to tell the admins of payment ``row_id`` before its next
    message; False when another process has taken it over."""
    return await _renew_claim(Payment.admins_claimed_at, row_id, claim, now)


async def release_admins_claim(row_id: int, claim: datetime) -> None:
    """Nothing is left to tell the admins of payment ``row_id``: the claim taken at ``claim`` is let lapse at once,
    so whoever records the next thing to tell them claims it."""
    await _release_claim(Payment.admins_claimed_at, row_id, claim)


async def _renew_claim(column: Timestamptz, row_id: int, claim: datetime, now: datetime) -> bool:
    renewed = (
        await Payment.update({column: now}).where((payment_pk == row_id) & (column == claim)).returning(payment_pk)
    )
    return bool(renewed)


async def _release_claim(column: Timestamptz, row_id: int, claim: datetime) -> None:
    await Payment.update({column: claim - NOTICE_LEASE}).where((payment_pk == row_id) & (column == claim))


async def owed_to_admins(row_id: int) -> dict[str, Any] | None:
    """Payment ``row_id`` as its admins' notices need it, while the admins are owed one."""
    row: dict[str, Any] | None = (
        await Payment.select(
            Payment.yookassa_id,
            Payment.telegram_id,
            Payment.plan,
            Payment.amount,
            Payment.refunded_amount,
            Payment.admins_told_refunded,
            Payment.status,
            Payment.admins_notified_at,
        )
        .where((payment_pk == row_id) & _owed_to_admins())
        .first()
    )
    return row


async def untold_to_admins(now: datetime | None = None) -> list[int]:
    """Payments whose admins' notice did not go out and whose last claim has lapsed, for the periodic check; those
    recorded longer than ``CHECK_UNTIL`` ago are given up, as the payer's notices are."""
    now = now or utcnow()
    rows = await Payment.select(payment_pk).where(_untold_to_admins(now))
    return [row["id"] for row in rows]


def _untold_to_admins(now: datetime) -> Combinable:
    return _untold(_owed_to_admins(), Payment.admins_claimed_at, now)


async def mark_admins_told_of_payment(row_id: int) -> None:
    await Payment.update({Payment.admins_notified_at: utcnow()}).where(
        (payment_pk == row_id) & Payment.admins_notified_at.is_null()
    )


async def mark_admins_told_of_refunds(row_id: int, total: Decimal) -> None:
    """The admins were told payment ``row_id`` was refunded ``total`` in all."""
    await _mark_refunds_told(Payment.admins_told_refunded, row_id, total)


@dataclass(frozen=True, slots=True)
class AdminTold:
    """What one admin was told of a payment whose notice has not reached every admin (``PaymentAdminNotice``)."""

    paid: bool = False
    refunded: Decimal = Decimal(0)


async def told_each_admin(row_id: int) -> dict[int, AdminTold]:
    """What each admin was told of payment ``row_id`` beyond what all of them were told (the payment's own marks)."""
    told: dict[int, AdminTold] = {}
    rows = await PaymentAdminNotice.select(
        PaymentAdminNotice.admin_id, PaymentAdminNotice.paid, PaymentAdminNotice.refunded
    ).where(PaymentAdminNotice.payment == row_id)
    for row in rows:
        was = told.get(row["admin_id"], AdminTold())
        told[row["admin_id"]] = AdminTold(
            was.paid or bool(row["paid"]), max(was.refunded, stored_money(row["refunded"]))
        )
    return told


async def mark_admin_told(row_id: int, admin_id: int, told: AdminTold) -> None:
    """Admin ``admin_id`` had (or cannot get) the notice of payment ``row_id`` that tells ``told``. Only the process
    holding the admins' claim writes it, so no two write one admin's row at once."""
    values: dict[Column | str, Any] = {PaymentAdminNotice.paid: told.paid, PaymentAdminNotice.refunded: told.refunded}
    mine = (PaymentAdminNotice.payment == row_id) & (PaymentAdminNotice.admin_id == admin_id)
    if not await PaymentAdminNotice.update(values).where(mine).returning(PaymentAdminNotice.admin_id):
        await PaymentAdminNotice.insert(
            PaymentAdminNotice(payment=row_id, admin_id=admin_id, paid=told.paid, refunded=told.refunded)
        )


async def forget_admins_told(row_id: int) -> None:
    """The admins were all told all there is of payment ``row_id``: the payment's own marks say it all."""
    await PaymentAdminNotice.delete().where(PaymentAdminNotice.payment == row_id)


# The payer's notice of a payment's refunds is kept as the admins' is: ``Payment.payer_told_refunded`` is the refunded
# total they were told of, and ``Payment.payer_refund_claimed_at`` the claim of the process telling them, taken in
# the transaction that records a refund (``owe_payer_refund``) or by a later check once it has lapsed, renewed before
# each message and let lapse once nothing is left to tell. A payment whose refunds are told with it (refunded before
# its success was heard) needs no notice of its own: its payer's notice of the payment tells them.


def _refunds_owed_to_payer() -> Combinable:
    """Refunds of a payment beyond the total its payer was told of, while the payment names them."""
    return Payment.telegram_id.is_not_null() & (Payment.refunded_amount > Payment.payer_told_refunded)


async def owe_payer_refund(row_id: int, now: datetime, *, refunded_before: Decimal) -> bool:
    """In the transaction that records a refund of payment ``row_id``: its payer is owed a notice of it, and this
    process claims it unless another holds the claim. True when this process is to tell them
    (``BillingNotices.tell_payer_of_refunds``); otherwise the holder, or the periodic check once the claim lapses,
    does.

    A payment no claim was ever taken on had its refunds so far, ``refunded_before``, told by the code that recorded
    them (a version that kept no record of it, or the payer's notice of the payment): they are marked told, so that
    they are not told again with this one."""
    await _mark_refunded_before_told(
        Payment.payer_told_refunded, Payment.payer_refund_claimed_at, row_id, refunded_before
    )
    return await _claim_first(Payment.payer_refund_claimed_at, _refunds_owed_to_payer(), row_id, now)


async def claim_payer_refund_notice(row_id: int, now: datetime) -> bool:
    """Claim the payer's notice of payment ``row_id``'s refunds that its recorder did not send (it stopped first, or
    Telegram failed): only once the last claim has lapsed, so two processes never send it, and only while it is
    owed."""
    column = Payment.payer_refund_claimed_at
    return await _claim(column, _refunds_owed_to_payer(), row_id, now, _claim_lapsed(column, now))


async def renew_payer_refund_claim(row_id: int, claim: datetime, now: datetime) -> bool:
    """Renew this process's claim (taken at ``claim``) to tell the payer of payment ``row_id``'s refunds before its
    next message; False when another process has taken it over."""
    return await _renew_claim(Payment.payer_refund_claimed_at, row_id, claim, now)


async def release_payer_refund_claim(row_id: int, claim: datetime) -> None:
    """Nothing is left to tell the payer of payment ``row_id``'s refunds: the claim is let lapse at once."""
    await _release_claim(Payment.payer_refund_claimed_at, row_id, claim)


async def refunds_owed_to_payer(row_id: int) -> dict[str, Any] | None:
    """Payment ``row_id`` as its payer's notice of refunds needs it, while they are owed one."""
    row: dict[str, Any] | None = (
        await Payment.select(Payment.telegram_id, Payment.refunded_amount, Payment.payer_told_refunded)
        .where((payment_pk == row_id) & _refunds_owed_to_payer())
        .first()
    )
    return row


async def mark_payer_told_of_refunds(row_id: int, total: Decimal) -> None:
    """The payer was told payment ``row_id`` was refunded ``total`` in all (or cannot be told: they blocked the
    bot)."""
    await _mark_refunds_told(Payment.payer_told_refunded, row_id, total)


async def payers_untold_of_refunds(now: datetime | None = None) -> list[int]:
    """Payments whose payer's notice of a refund did not go out and whose last claim has lapsed, for the periodic
    check; those recorded longer than ``CHECK_UNTIL`` ago are given up, as the other notices are."""
    now = now or utcnow()
    rows = await Payment.select(payment_pk).where(_payer_untold_of_refunds(now))
    return [row["id"] for row in rows]


def _payer_untold_of_refunds(now: datetime) -> Combinable:
    return _untold(_refunds_owed_to_payer(), Payment.payer_refund_claimed_at, now)
