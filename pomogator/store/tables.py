"""Piccolo tables.

Rows refer to a person by ``telegram_id`` rather than a foreign key: it is the natural key every frontend already
has, so the hot path needs no extra look-up, and erasing a person is an explicit, auditable service operation.
"""

from __future__ import annotations

from decimal import Decimal

from piccolo.columns import (
    JSON,
    BigInt,
    Boolean,
    Integer,
    Numeric,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table


class User(Table, tablename="users"):
    telegram_id = BigInt(unique=True, index=True)
    first_name = Varchar(length=255, default="")
    last_name = Varchar(length=255, default="")
    username = Varchar(length=255, null=True, default=None)
    language = Varchar(length=16, null=True, default=None)
    model = Varchar(length=255, null=True, default=None)
    role = Text(null=True, default=None)
    email = Varchar(length=255, null=True, default=None)
    created_at = Timestamptz()
    last_seen_at = Timestamptz()
    # When the person last cleared their context: an answer whose request started before then is not stored.
    context_cleared_at = Timestamptz(null=True, default=None)


class DialogMessage(Table, tablename="dialog_messages"):
    id = Serial(primary_key=True)
    telegram_id = BigInt(index=True)
    role = Varchar(length=16)
    content = JSON()
    model = Varchar(length=255, null=True, default=None)
    tokens = Integer(default=0)
    created_at = Timestamptz()


class DailyUsage(Table, tablename="daily_usage"):
    """Requests used per person, model and calendar day; unique on (telegram_id, model, day)."""

    telegram_id = BigInt()
    model = Varchar(length=255)
    day = Varchar(length=10)
    used = Integer(default=0)


class QuotaGiveBack(Table, tablename="quota_give_backs"):
    """The reservations given back (``QuotaService.refund``), by their token: a give-back whose answer was lost (the
    connection dropped after the server committed it) and that is tried again finds its token here and takes
    nothing more. Kept for the day of the reservation and the next (the give-backs delete older ones); no person
    is named."""

    token = Varchar(length=32, primary_key=True)
    day = Varchar(length=10, index=True)


class LLMRequest(Table, tablename="llm_requests"):
    """Usage and cost reported by OpenRouter for each answered request."""

    telegram_id = BigInt(null=True, default=None, index=True)
    model = Varchar(length=255)
    prompt_tokens = Integer(default=0)
    completion_tokens = Integer(default=0)
    cost = Numeric(digits=(14, 8), null=True, default=None)
    status = Varchar(length=16, default="ok")
    created_at = Timestamptz(index=True)


class Subscription(Table, tablename="subscriptions"):
    telegram_id = BigInt(index=True)
    plan = Varchar(length=32)
    starts_at = Timestamptz()
    ends_at = Timestamptz()
    payment_id = Varchar(length=64, null=True, default=None)
    reminded_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz()


class Payment(Table, tablename="payments"):
    yookassa_id = Varchar(length=64, null=True, default=None, unique=True)
    telegram_id = BigInt(null=True, default=None, index=True)
    plan = Varchar(length=32)
    amount = Numeric(digits=(12, 2))
    currency = Varchar(length=3, default="RUB")
    status = Varchar(length=32, default="new")
    idempotence_key = Varchar(length=64, unique=True)
    confirmation_url = Text(null=True, default=None)
    refunded_amount = Numeric(digits=(12, 2), default=Decimal(0))
    # Days of premium the payment buys, as offered at checkout; NULL for payments made before it was kept (the
    # plan's days then apply).
    days = Integer(null=True, default=None)
    cancellation_reason = Varchar(length=64, null=True, default=None)
    raw_object = JSON(null=True, default=None)
    # A refund asked of YooKassa and not recorded yet (its answer may never have come, and it may have been made):
    # its idempotence key, amount and time. Asking for the same refund again reuses the key, so YooKassa makes it
    # at most once; cleared once the refund is recorded (or, answered pending, once followed as refund_waiting_id:
    # then the amount stays, the waited-for refund's, until it is settled).
    refund_key = Varchar(length=64, null=True, default=None)
    refund_key_amount = Numeric(digits=(12, 2), null=True, default=None)
    refund_key_at = Timestamptz(null=True, default=None)
    # When the payer was told of the payment (that it went through, or that it failed); NULL until a notice was
    # delivered, so the periodic check sends it again after a crash between recording the payment and telling them.
    notified_at = Timestamptz(null=True, default=None)
    # When a process took it on itself to tell the payer (see ``pomogator.services.notice_claims.NOTICE_LEASE``); set in
    # the statement or transaction that records the payment's success or failure, so a payment recorded before the
    # notice was kept is never owed one.
    notice_claimed_at = Timestamptz(null=True, default=None)
    # The payer's notice of the payment's refunds, kept as the admins' are (``claim_payer_refund_notice``): the
    # refunded total they were told of, and when a process took it on itself to tell them, set in the transaction
    # that records a refund.
    payer_told_refunded = Numeric(digits=(12, 2), default=Decimal(0))
    payer_refund_claimed_at = Timestamptz(null=True, default=None)
    # The admins' notices, kept the same way (see ``pomogator.services.notice_claims.claim_admins_notice``): when
    # they were told the payment went through (NULL until every admin had it or cannot get it); the refunded total
    # they were told of; and when a process took it on itself to tell them, set in the transaction that records what
    # they are to hear of.
    admins_notified_at = Timestamptz(null=True, default=None)
    admins_told_refunded = Numeric(digits=(12, 2), default=Decimal(0))
    admins_claimed_at = Timestamptz(null=True, default=None)
    # A refund YooKassa answered as pending: the periodic check asks about it until it succeeds or is canceled (its
    # amount: refund_key_amount).
    refund_waiting_id = Varchar(length=64, null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class PaymentAdminNotice(Table, tablename="payment_admin_notices"):
    """What one admin was told of a payment while its notice has not reached every admin (``Payment.admins_notified_at``
    and ``admins_told_refunded`` are marked once it has): a notice sent again goes only to the admins who missed it.
    Deleted once the admins were told all there is; no payer is named. Written by the process that holds the claim to
    tell the admins (``Payment.admins_claimed_at``); were two rows ever written for one admin, the most they say holds.
    """

    payment = Integer(index=True)  # payments.id
    admin_id = BigInt()
    paid = Boolean(default=False)  # told the payment went through
    refunded = Numeric(digits=(12, 2), default=Decimal(0))  # the refunded total told of


class LogRecord(Table, tablename="log_records"):
    id = Serial(primary_key=True)
    created_at = Timestamptz(index=True)
    level = Varchar(length=16)
    logger = Varchar(length=255)
    message = Text()
    process = Varchar(length=64)
    telegram_id = BigInt(null=True, default=None, index=True)
    context = JSON(default="{}")
    exception = Text(null=True, default=None)


TABLES: tuple[type[Table], ...] = (
    User,
    DialogMessage,
    DailyUsage,
    QuotaGiveBack,
    LLMRequest,
    Subscription,
    Payment,
    PaymentAdminNotice,
    LogRecord,
)
