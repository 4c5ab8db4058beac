"""``pomogator payments``: list payments, re-check one with YooKassa (a lost webhook), refund."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import typer

from pomogator import cli_output
from pomogator.billing.models import PENDING, STATUSES, SUCCEEDED
from pomogator.commands import MAX_ROWS, TELEGRAM_ID_MAX, TELEGRAM_ID_MIN, confirm, sub_app

if TYPE_CHECKING:
    from pomogator.container import Services
    from pomogator.services.billing import PaymentOutcome
    from pomogator.services.payments import PaymentRecord
    from pomogator.services.refunds import RefundOutcome

app = sub_app("YooKassa payments.")

# What an operator is told when a refund was asked for and its outcome is unknown: asking again is safe (the same
# idempotence key is sent, ``RefundService.refund``).
MAY_HAVE_BEEN_MADE = "The refund may have been made: run the same command again"
NOT_TWICE = "(a refund already asked for is not made twice)."

# An amount as ``--amount`` takes it: ASCII digits, then a point or a comma and the kopecks (at most two: ``_amount``).
AMOUNT_RE = re.compile(r"([0-9]+)(?:[.,]([0-9]+))?")

PaymentId = Annotated[
    str, typer.Argument(metavar="PAYMENT_ID", help="The YooKassa payment id (see `pomogator payments list`).")
]


@app.command("list")
def list_payments(
    user: Annotated[
        int | None,
        typer.Option(
            "--user",
            metavar="TELEGRAM_ID",
            min=TELEGRAM_ID_MIN,
            max=TELEGRAM_ID_MAX,
            help="Only this Telegram user's payments.",
        ),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", metavar="STATUS", help=f"Only payments with this status: {', '.join(STATUSES)}."),
    ] = None,
    limit: Annotated[
        int, typer.Option(metavar="N", min=1, max=MAX_ROWS, help="Show at most this many, newest first.")
    ] = 100,
) -> None:
    """List payments, newest first (from the database; the YooKassa keys are not needed)."""
    from pomogator.cli import with_services
    from pomogator.services.payments import list_payments as stored_payments

    if status is not None and status not in STATUSES:
        raise typer.BadParameter(f"expected one of {', '.join(STATUSES)}", param_hint="--status")

    async def fn(services: Services) -> None:
        tz = services.settings.tz
        records = await stored_payments(telegram_id=user, status=status, limit=limit + 1)
        rows = [
            (
                r.payment_id or f"(local {r.local_id})",
                "" if r.telegram_id is None else r.telegram_id,
                r.plan,
                f"{r.amount} {r.currency}",
                r.status,
                _refunded(r),
                r.cancellation_reason or "",
                r.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            )
            for r in records
        ]
        columns = ["payment", "user", "plan", "amount", "status", "refunded", "reason", "created"]
        cli_output.print_table("Payments", columns, rows[:limit])
        if len(rows) > limit:
            cli_output.notice(f"Showing the newest {limit} payment{'' if limit == 1 else 's'}; --limit for more.")

    # Read from the database alone: the YooKassa keys are not needed.
    with_services(fn)


def _refunded(record: PaymentRecord) -> str:
    """The refunded column: the total refunded, and a refund YooKassa has not made yet ("299.50, 100.00 pending")."""
    parts = [f"{record.refunded_amount}"] if record.refunded_amount else []
    if record.refund_waiting_id is not None:
        amount = record.refund_waiting_amount
        parts.append("pending" if amount is None else f"{amount} pending")
    return ", ".join(parts)


@app.command("check")
def check(payment_id: PaymentId) -> None:
    """Fetch a payment from YooKassa and apply it: the fix for a lost webhook notification.

    A succeeded payment activates premium (once, however often it is checked); a canceled one is recorded and the
    user is told why. This is the same operation the webhook runs.
    """
    from pomogator.cli import with_services

    async def fn(services: Services) -> tuple[PaymentOutcome, str]:
        outcome = await services.billing.sync_payment(payment_id)
        until = outcome.premium_until or (
            await services.subscriptions.premium_until(outcome.telegram_id) if outcome.telegram_id else None
        )
        shown = f"premium until {until.astimezone(services.settings.tz):%Y-%m-%d %H:%M %Z}" if until else "no premium"
        return outcome, shown

    outcome, premium = with_services(fn, "yookassa_shop_id", "yookassa_secret_key")
    what = "applied now" if outcome.changed else "nothing to change"
    cli_output.notice(
        f"Payment {outcome.payment_id}: {outcome.status} ({what}); user {outcome.telegram_id} has {premium}."
    )
    canceled = outcome.refund_canceled
    if canceled is not None:
        cli_output.notice(
            f"Refund {canceled.id} of {canceled.amount} {canceled.currency}, which YooKassa had answered as pending, "
            f"was {canceled.status}: nothing was refunded. See why in YooKassa's dashboard, then refund again if "
            "needed."
        )


def _amount(value: str | None) -> Decimal | None:
    """``--amount`` as written by hand: rubles in ASCII digits, kopecks after a point or a comma (``99.50``,
    ``99,50``). Anything else is refused rather than read as something the operator may not have meant: ``1,500``
    (thousands or one and a half?), ``1e2``, ``1_000``, digits of other scripts."""
    from pomogator.errors import BillingError
    from pomogator.services.refunds import checked_refund_amount

    if value is None:
        return None
    text = value.strip()
    match = AMOUNT_RE.fullmatch(text)
    if match is None:
        raise typer.BadParameter(
            f"{value!r} is not an amount: give rubles in digits, with kopecks after a point or a comma, e.g. 299.50",
            param_hint="--amount",
        )
    if "," in text and len(match.group(2)) == 3:
        raise typer.BadParameter(
            f"{value!r} is ambiguous: a comma followed by three digits may separate thousands; write the amount "
            "without separators, with at most 2 decimals (1500, 1.50)",
            param_hint="--amount",
        )
    if match.group(2) is not None and len(match.group(2)) > 2:
        # "1.500" is 1.50, but a third decimal written may be a typo of another sum.
        raise typer.BadParameter(
            f"{value!r} has more than 2 decimal places; give rubles and kopecks, e.g. 299.50", param_hint="--amount"
        )
    try:
        return checked_refund_amount(Decimal(text.replace(",", ".")))
    except BillingError as exc:
        raise typer.BadParameter(str(exc), param_hint="--amount") from None


@app.command("refund")
def refund(
    payment_id: PaymentId,
    amount: Annotated[
        str | None,
        typer.Option(
            "--amount", metavar="RUBLES", help="Refund this much, in rubles (default: everything not refunded)."
        ),
    ] = None,
    email: Annotated[
        str | None,
        typer.Option(
            "--email",
            metavar="EMAIL",
            help="With receipts on: send the refund's receipt here (default: the user's stored email; a person who "
            "erased their data has none, so give the address of the payment's receipt).",
        ),
    ] = None,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", help="Do not ask for confirmation. Needed when stdin is not a terminal (scripts, cron, pipes)."
        ),
    ] = False,
) -> None:
    """Refund a succeeded payment (in full or in part) and shorten the user's premium by the refunded share."""
    from pomogator.cli import with_services
    from pomogator.errors import BillingError, PaymentProviderUnavailable, PaymentRejected, RefundEmailRequired
    from pomogator.servers import settings_for

    value = _amount(amount)
    # Missing credentials (and a misspelt name that explains them) are said before asking for a confirmation that
    # could not be acted on.
    settings_for("yookassa_shop_id", "yookassa_secret_key")
    if not yes:
        from pomogator.services.payments import payment_row

        async def look(services: Services) -> None:
            await payment_row(payment_id)  # PaymentNotFound: a mistyped id is said at once, not after a "y"

        with_services(look)
        how_much = f"{value} RUB of" if value is not None else "everything left of"
        confirm(f"Refund {how_much} payment {payment_id}?", "Not refunding")

    asked = False

    def asking() -> None:
        nonlocal asked
        asked = True

    async def fn(services: Services) -> tuple[RefundOutcome, str]:
        outcome = await services.billing.refunds.refund(payment_id, value, email=email, asking=asking)
        until = outcome.premium_until
        shown = until.astimezone(services.settings.tz).strftime("%Y-%m-%d %H:%M %Z") if until else "no premium"
        return outcome, shown

    try:
        outcome, until = with_services(fn, "yookassa_shop_id", "yookassa_secret_key")
    except RefundEmailRequired as exc:
        raise RefundEmailRequired(f"{exc} Pass it with --email.") from None
    except PaymentRejected:
        raise
    except PaymentProviderUnavailable as exc:
        raise PaymentProviderUnavailable(f"{exc} {MAY_HAVE_BEEN_MADE} once YooKassa answers {NOT_TWICE}") from None
    except (KeyboardInterrupt, SystemExit):
        # Ctrl-C, or SIGTERM (``servers._terminate``): the exit code stays 130 or 143.
        if asked:
            cli_output.error(f"Interrupted after YooKassa was asked. {MAY_HAVE_BEEN_MADE} {NOT_TWICE}")
        raise
    if outcome.status == PENDING:
        cli_output.notice(
            f"Refund {outcome.refund_id} of {outcome.amount} RUB is pending; it is recorded when YooKassa reports it "
            "succeeded."
        )
        return
    if outcome.status != SUCCEEDED:
        raise BillingError(
            f"Refund {outcome.refund_id} of {outcome.amount} RUB was {outcome.status} by YooKassa: nothing was "
            "refunded, and the user's premium is unchanged. See why in YooKassa's dashboard (the shop's balance, "
            "say), then run the command again."
        )
    if not outcome.changed:
        cli_output.notice(
            f"Refund {outcome.refund_id} was already recorded (refunded in total: {outcome.refunded_total} RUB)."
        )
        return
    cli_output.notice(
        f"Refunded {outcome.amount} RUB of payment {outcome.payment_id} (refunded in total: "
        f"{outcome.refunded_total} RUB). Premium now: {until}."
    )
