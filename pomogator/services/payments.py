"""Payments as stored: the plans sold, the payment rows the billing and refund services read and change, the ones
something is still owed for, and the admin listing. Who tells people of a payment, and what they were told, is kept
in :mod:`pomogator.services.notice_claims`. Plain queries: nothing here calls YooKassa or imports its SDK (the web
app asks ``waiting_payments`` before it builds the billing service).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pomogator.billing.models import CENT, PENDING, SUCCEEDED, UNVERIFIED
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


# A refund asked for keeps its idempotence key (``Payment.refund_key``) until it is recorded, or stored to be waited
# for: when its answer is lost, or something fails after it came, asking again within the time YooKassa keeps keys
# gets the same refund back, made once (``RefundService.refund``). After that time, what was made shows in the
# payment's refunded amount. Meanwhile the periodic check reads the payment (``waiting_payments``).
REFUND_KEY_LIFETIME = timedelta(hours=24)


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
    # A refund YooKassa answered as pending and is waited for, and its amount (None when a version that did not
    # keep it asked for it).
    refund_waiting_id: str | None = None
    refund_waiting_amount: Decimal | None = None


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


async def current_owner(row_id: int) -> int | None:
    """Whom payment ``row_id`` belongs to now: None once they erased their data (a row read before a call to
    YooKassa may name someone who erased their data meanwhile)."""
    row = await Payment.select(Payment.telegram_id).where(payment_pk == row_id).first()
    return None if row is None else row["telegram_id"]


async def waiting_payments(now: datetime | None = None) -> list[str]:
    """Our payments something is still owed for, to ask YooKassa about (``BillingService.check_waiting``): ones it
    has not settled, old enough (see ``CHECK_AFTER``); succeeded or failed ones whose payer was not told; ones with a
    refund it answered as pending; ones with a refund asked for and not recorded (``refund_key``, while YooKassa
    keeps the key: the run that asked was stopped, or its answer lost, and the refund may have been made: reading the
    payment records what YooKassa refunded, and asks for nothing); and ones whose admins, or whose payer, were not
    told of a refund or payment (the notices whose claim has lapsed: ``notice_claims.notices_untold``; the check
    tells them first)."""
    # Imported here: notice_claims builds on this module.
    from pomogator.services.notice_claims import notices_untold

    now = now or utcnow()
    unsettled = (
        (Payment.status == PENDING)
        & (Payment.created_at <= now - CHECK_AFTER)
        & (Payment.created_at > now - CHECK_UNTIL)
    )
    # An unverified payment's refund too: the remedy, which lets its payer buy again (``BillingService``).
    refunding = Payment.status.is_in([SUCCEEDED, UNVERIFIED]) & (
        Payment.refund_waiting_id.is_not_null()
        | (Payment.refund_key.is_not_null() & (Payment.refund_key_at > now - REFUND_KEY_LIFETIME))
    )
    rows = await Payment.select(Payment.yookassa_id).where(
        Payment.yookassa_id.is_not_null() & (unsettled | refunding | notices_untold(now))
    )
    return [row["yookassa_id"] for row in rows]


async def forget_waiting_refund(row_id: int, refund_id: str) -> None:
    """Refund ``refund_id`` of payment ``row_id`` is settled: the periodic check no longer asks about it, and its
    amount (kept in ``refund_key_amount`` while it was waited for) goes, unless a new refund's key holds it now."""
    await Payment.update({Payment.refund_waiting_id: None}).where(
        (payment_pk == row_id) & (Payment.refund_waiting_id == refund_id)
    )
    await Payment.update({Payment.refund_key_amount: None}).where(
        (payment_pk == row_id) & Payment.refund_waiting_id.is_null() & Payment.refund_key.is_null()
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
            refund_waiting_id=row["refund_waiting_id"],
            refund_waiting_amount=(
                stored_money(row["refund_key_amount"])
                if row["refund_waiting_id"] is not None and row["refund_key_amount"] is not None
                else None
            ),
        )
        for row in await query
    ]
