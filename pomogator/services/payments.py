"""Payments as stored: the plans sold, the payment rows the billing and refund services read and change, the ones
something is still owed for, and the admin listing. Plain queries: nothing here calls YooKassa or imports its SDK
(the web app asks ``waiting_payments`` before it builds the billing service).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pomogator.billing.models import CENT, PENDING, SUCCEEDED
from pomogator.errors import PaymentNotFound
from pomogator.store.tables import Payment
from pomogator.timeutil import as_utc, utcnow

CURRENCY = "RUB"
# Piccolo adds the `id` column itself, invisibly to the type checker.
payment_pk = Payment._meta.primary_key
# Payments still waiting for the person are asked about from this age on: their notification may never come (the
# web app down for longer than YooKassa's day of retries, a proxy refusing it). Younger ones are being paid now;
# YooKassa cancels an unpaid one within hours, so after two days none is left to ask about.
CHECK_AFTER = timedelta(minutes=10)
CHECK_UNTIL = timedelta(days=2)
# The payer's notice is claimed by the process that sends it (``Payment.notice_claimed_at``, first in the transaction
# that records the payment) and marked sent once delivered. One that did not go out (the process stopped before
# telling them, or Telegram failed) is claimed again by a later check or notification once this has passed since the
# last claim: longer than a send takes at the worst (three tries, each waiting out at most 30 s of flood control),
# so two processes never send it at once.
NOTICE_LEASE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    price: Decimal
    days: int


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


def stored_money(value: Any) -> Decimal:
    """An amount column's value as a Decimal in kopecks."""
    # SQLite hands NUMERIC back through float; two decimals are all a price ever has.
    return Decimal(str(value if value is not None else 0)).quantize(CENT)


def offered(row: Mapping[str, Any], plan: Plan) -> Plan:
    """``plan`` as the payment ``row`` offered it: the price and the days it was made with."""
    return Plan(plan.name, stored_money(row["amount"]), row["days"] or plan.days)


def receipt_description(plan: Plan) -> str:
    """What the payment, its receipt and a refund's receipt say was sold."""
    return f"Премиум «Помогатора» на {plan.days} дн."


async def payment_row(payment_id: str) -> dict[str, Any]:
    """Our row of the YooKassa payment ``payment_id``. Raises PaymentNotFound."""
    row = await Payment.select().where(Payment.yookassa_id == payment_id).first()
    if row is None:
        raise PaymentNotFound(f"Payment {payment_id[:64]} is not one of ours.")
    return row


async def waiting_payments(now: datetime | None = None) -> list[str]:
    """Our payments something is still owed for, to ask YooKassa about (``BillingService.check_waiting``): ones it
    has not settled, old enough (see ``CHECK_AFTER``); succeeded ones whose payer was not told (see
    ``NOTICE_LEASE``); and ones with a refund it answered as pending."""
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


async def mark_told(row_id: int) -> None:
    """The payer's notice of payment ``row_id`` was delivered (or there is nothing to tell them)."""
    await Payment.update({Payment.notified_at: utcnow()}).where((payment_pk == row_id) & Payment.notified_at.is_null())


async def forget_waiting_refund(row_id: int, refund_id: str) -> None:
    """Refund ``refund_id`` of payment ``row_id`` is settled: the periodic check no longer asks about it."""
    await Payment.update({Payment.refund_waiting_id: None}).where(
        (payment_pk == row_id) & (Payment.refund_waiting_id == refund_id)
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
            amount=stored_money(row["amount"]),
            currency=row["currency"],
            status=row["status"],
            refunded_amount=stored_money(row["refunded_amount"]),
            cancellation_reason=row["cancellation_reason"],
            created_at=as_utc(row["created_at"]),
            updated_at=as_utc(row["updated_at"]),
        )
        for row in await query
    ]
