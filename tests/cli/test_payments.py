"""``pomogator payments`` as a person runs it: real processes against the fake YooKassa and the fake Bot API."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from pomogator.commands.payments import _amount
from pomogator.container import Services, build_services
from pomogator.store.tables import LogRecord
from pomogator.timeutil import utcnow
from tests.cli.helpers import POMOGATOR, Result, clean_env, run_cli
from tests.cli.terminal import run_in_terminal
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.yookassa_server import FakeYooKassa
from tests.web.support import ADMIN_ID, USER_ID, add_user, billing_env, billing_settings

UNKNOWN_ID = "2f0e6ff9-000f-5000-8000-1a2b3c4d5e6f"


@pytest.fixture
async def services(db_url: str, kassa: FakeYooKassa, tg: FakeTelegram) -> AsyncIterator[Services]:
    async with build_services(billing_settings(db_url, kassa, tg), migrate=True) as built:
        await add_user(built, tg)
        yield built


async def payments(services: Services, tmp_path: Path, *args: str) -> Result:
    return await run_cli("payments", *args, cwd=tmp_path, env=billing_env(services.settings))


async def paid_month(services: Services, kassa: FakeYooKassa) -> str:
    """A month's payment made and applied: its YooKassa id."""
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    await services.billing.sync_payment(checkout.payment_id)
    return checkout.payment_id


async def test_check_applies_a_payment_whose_webhook_was_lost(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, tmp_path: Path
) -> None:
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    first = await payments(services, tmp_path, "check", checkout.payment_id)
    assert first.code == 0, first.stderr
    assert f"Payment {checkout.payment_id}: succeeded (applied now); user {USER_ID} has premium until " in first.stderr
    until = await services.subscriptions.premium_until(USER_ID)
    assert until is not None and abs(until - (utcnow() + timedelta(days=30))) < timedelta(minutes=1)
    assert len([t for t in tg.sent_texts(USER_ID) if "получена" in t]) == 1

    again = await payments(services, tmp_path, "check", checkout.payment_id)
    assert again.code == 0, again.stderr
    assert "nothing to change" in again.stderr
    assert await services.subscriptions.premium_until(USER_ID) == until
    assert len([t for t in tg.sent_texts(USER_ID) if "получена" in t]) == 1


async def test_check_of_a_pending_payment_changes_nothing(
    services: Services, kassa: FakeYooKassa, tmp_path: Path
) -> None:
    checkout = await services.billing.start_payment(USER_ID, "month")
    result = await payments(services, tmp_path, "check", checkout.payment_id)
    assert result.code == 0, result.stderr
    said = f"Payment {checkout.payment_id}: pending (nothing to change); user {USER_ID} has no premium."
    assert said in result.stderr
    assert await services.subscriptions.premium_until(USER_ID) is None


async def test_check_errors_are_one_line(services: Services, kassa: FakeYooKassa, tmp_path: Path) -> None:
    unknown = await payments(services, tmp_path, "check", UNKNOWN_ID)
    assert unknown.code == 1
    assert "not one of ours" in unknown.stderr and "Traceback" not in unknown.stderr

    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.down = True
    down = await payments(services, tmp_path, "check", checkout.payment_id)
    assert down.code == 1
    assert "YooKassa answered with an error" in down.stderr and "Traceback" not in down.stderr
    assert kassa.secret_key not in down.stderr + down.stdout


async def test_refund_in_part_then_in_full(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, tmp_path: Path
) -> None:
    payment_id = await paid_month(services, kassa)

    half = await payments(services, tmp_path, "refund", payment_id, "--amount", "299,50", "--yes")
    assert half.code == 0, half.stderr
    assert "Refunded 299.50 RUB" in half.stderr
    until = await services.subscriptions.premium_until(USER_ID)
    assert until is not None and abs(until - (utcnow() + timedelta(days=15))) < timedelta(minutes=1)

    rest = await payments(services, tmp_path, "refund", payment_id, "--yes")
    assert rest.code == 0, rest.stderr
    assert "refunded in total: 599.00 RUB" in rest.stderr
    assert await services.subscriptions.premium_until(USER_ID) is None
    assert [Decimal(r.json["amount"]["value"]) for r in kassa.refund_requests] == [Decimal("299.50"), Decimal("299.50")]

    nothing_left = await payments(services, tmp_path, "refund", payment_id, "--yes")
    assert nothing_left.code == 1
    assert f"Payment {payment_id} is already fully refunded (599.00 RUB)." in nothing_left.stderr
    some_more = await payments(services, tmp_path, "refund", payment_id, "--amount", "1", "--yes")
    assert some_more.code == 1
    assert "already fully refunded" in some_more.stderr
    assert len(kassa.refund_requests) == 2
    assert len([t for t in tg.sent_texts(ADMIN_ID) if "Возврат" in t]) == 2


async def test_the_commands_output_is_not_broken_into_by_log_records_unless_asked(
    services: Services, kassa: FakeYooKassa, tmp_path: Path
) -> None:
    payment_id = await paid_month(services, kassa)
    logged = f"for payment {payment_id}: succeeded"  # the refund service's INFO record
    env = billing_env(services.settings)
    del env["POMOGATOR_LOG_LEVEL"]
    quiet = await run_cli("payments", "refund", payment_id, "--amount", "1", "--yes", cwd=tmp_path, env=env)
    assert quiet.code == 0, quiet.stderr
    assert quiet.stderr.startswith("Refunded 1.00 RUB") and logged not in quiet.stderr
    # The database keeps it all the same.
    assert await LogRecord.count().where(LogRecord.message.like(f"%{logged}%")) == 1
    env["POMOGATOR_LOG_LEVEL"] = "INFO"
    asked = await run_cli("payments", "refund", payment_id, "--amount", "1", "--yes", cwd=tmp_path, env=env)
    assert asked.code == 0, asked.stderr
    assert logged in asked.stderr


async def test_a_refund_yookassa_does_not_make_at_once_is_reported_as_it_stands(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, tmp_path: Path
) -> None:
    payment_id = await paid_month(services, kassa)
    until = await services.subscriptions.premium_until(USER_ID)

    # Canceled right away (the shop's balance is too low, say): it will never succeed, nothing is waited for.
    kassa.refund_status = "canceled"
    canceled = await payments(services, tmp_path, "refund", payment_id, "--yes")
    assert canceled.code == 1 and "Traceback" not in canceled.stderr
    assert "canceled by YooKassa: nothing was refunded" in canceled.stderr
    assert "recorded when YooKassa reports it succeeded" not in canceled.stderr
    assert await services.subscriptions.premium_until(USER_ID) == until
    [refund_id] = kassa.refunds
    assert any(refund_id in t and "отменён" in t for t in tg.sent_texts(ADMIN_ID))
    assert not any("возврат" in t.lower() for t in tg.sent_texts(USER_ID))

    # Pending: recorded once it succeeds.
    kassa.refund_status = "pending"
    pending = await payments(services, tmp_path, "refund", payment_id, "--yes")
    assert pending.code == 0, pending.stderr
    assert "is pending; it is recorded when YooKassa reports it succeeded" in pending.stderr


async def test_list_shows_a_pending_refund_and_check_says_when_it_was_canceled(
    services: Services, kassa: FakeYooKassa, tmp_path: Path
) -> None:
    """A pending refund left the refunded column empty, and once YooKassa canceled it `payments check` said
    "nothing to change" (only a WARNING log line told of it)."""
    payment_id = await paid_month(services, kassa)

    async def refunded_column() -> str:
        listed = await payments(services, tmp_path, "list")
        [row] = [line.split("\t") for line in listed.stdout.splitlines()[1:]]
        return row[5]

    kassa.refund_status = "pending"
    asked = await payments(services, tmp_path, "refund", payment_id, "--amount", "100", "--yes")
    assert asked.code == 0, asked.stderr
    assert await refunded_column() == "100.00 pending"
    [refund_id] = kassa.refunds
    kassa.settle_refund(refund_id, "canceled")
    checked = await payments(services, tmp_path, "check", payment_id)
    assert checked.code == 0, checked.stderr
    assert checked.stderr.splitlines()[-1] == (
        f"Refund {refund_id} of 100.00 RUB, which YooKassa had answered as pending, was canceled: nothing was "
        "refunded. See why in YooKassa's dashboard, then refund again if needed."
    )
    assert await refunded_column() == ""
    again = await payments(services, tmp_path, "check", payment_id)
    assert "Refund" not in again.stderr

    half = await payments(services, tmp_path, "refund", payment_id, "--amount", "299,50", "--yes")
    assert half.code == 0, half.stderr
    [_, second] = kassa.refunds
    kassa.settle_refund(second)
    assert (await payments(services, tmp_path, "check", payment_id)).code == 0
    kassa.refund_status = "pending"
    assert (await payments(services, tmp_path, "refund", payment_id, "--amount", "1", "--yes")).code == 0
    assert await refunded_column() == "299.50, 1.00 pending"


async def test_a_refund_whose_answer_was_lost_is_safe_to_run_again(
    services: Services, kassa: FakeYooKassa, tmp_path: Path
) -> None:
    payment_id = await paid_month(services, kassa)
    env = billing_env(services.settings, POMOGATOR_YOOKASSA_TIMEOUT="0.5")
    args = ("payments", "refund", payment_id, "--amount", "100", "--yes")

    kassa.hold_answers = True  # made, and its answer lost on the way back
    lost = await run_cli(*args, cwd=tmp_path, env=env)
    kassa.hold_answers = False
    assert lost.code == 1 and "Traceback" not in lost.stderr
    assert "The refund may have been made: run the same command again" in lost.stderr
    other = await run_cli(*args[:-2], "50", "--yes", cwd=tmp_path, env=env)
    assert other.code == 1 and "Ask for 100.00 again to finish it" in other.stderr

    again = await run_cli(*args, cwd=tmp_path, env=env)
    assert again.code == 0, again.stderr
    assert "refunded in total: 100.00 RUB" in again.stderr
    assert len(kassa.refunds) == 1


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_a_refund_interrupted_while_yookassa_is_asked_says_it_may_have_been_made(
    services: Services, kassa: FakeYooKassa, tmp_path: Path, stop: signal.Signals, code: int
) -> None:
    """Ctrl-C or SIGTERM while YooKassa made the refund and its answer was on its way back ended the command
    without a word: the refund was made, and neither the payment nor the premium said so."""
    payment_id = await paid_month(services, kassa)
    env = billing_env(services.settings, POMOGATOR_YOOKASSA_TIMEOUT="3")
    args = ("payments", "refund", payment_id, "--amount", "100", "--yes")

    async def interrupted(when: Callable[[], bool]) -> tuple[int | None, str]:
        process = await asyncio.create_subprocess_exec(
            POMOGATOR, *args, cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            for _ in range(600):
                if when():
                    break
                await asyncio.sleep(0.05)
            process.send_signal(stop)
            _, err = await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        return process.returncode, err.decode()

    kassa.hang = True  # the payment is being read: nothing was asked for yet
    before = len(kassa.requests)
    early_code, early = await interrupted(lambda: len(kassa.requests) > before)
    kassa.hang = False
    assert early_code == code and early == ""

    kassa.hold_answers = True  # made, and its answer on its way back
    late_code, late = await interrupted(lambda: bool(kassa.refund_requests))
    kassa.hold_answers = False
    assert late_code == code
    assert late.strip() == (
        "Error: Interrupted after YooKassa was asked. The refund may have been made: run the same command again (a "
        "refund already asked for is not made twice)."
    )
    again = await run_cli(*args, cwd=tmp_path, env=env)
    assert again.code == 0, again.stderr
    assert "refunded in total: 100.00 RUB" in again.stderr
    assert len(kassa.refunds) == 1


async def test_refund_refuses_bad_amounts_and_unpaid_payments(
    services: Services, kassa: FakeYooKassa, tmp_path: Path
) -> None:
    checkout = await services.billing.start_payment(USER_ID, "month")
    bad = await payments(services, tmp_path, "refund", checkout.payment_id, "--amount", "lots", "--yes")
    assert bad.code == 2
    unpaid = await payments(services, tmp_path, "refund", checkout.payment_id, "--yes")
    assert unpaid.code == 1
    assert "only succeeded payments can be refunded" in unpaid.stderr
    assert kassa.refund_requests == []


@pytest.mark.parametrize("amount", ["100.555", "0.001", "9" * 40])
async def test_refund_refuses_amounts_it_would_round(
    services: Services, kassa: FakeYooKassa, tmp_path: Path, amount: str
) -> None:
    """100.555 was refunded as 100.56."""
    payment_id = await paid_month(services, kassa)
    result = await payments(services, tmp_path, "refund", payment_id, "--amount", amount, "--yes")
    assert result.code == 2
    assert "has more than 2 decimal places" in result.stderr or "too large" in result.stderr
    assert "Traceback" not in result.stderr
    assert kassa.refund_requests == []


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        # Refunded 1.50 RUB: the operator meant fifteen hundred, or 1.50?
        ("1,500", "'1,500' is ambiguous: a comma followed by three digits may separate thousands"),
        ("1,000", "'1,000' is ambiguous"),
        ("1.500", "'1.500' has more than 2 decimal places"),
        ("1e2", "'1e2' is not an amount"),
        ("1e999", "'1e999' is not an amount"),
        ("1_000", "'1_000' is not an amount"),
        ("١٠", "'١٠' is not an amount"),  # Arabic-Indic digits: refunded 10.00
        ("１０", "'１０' is not an amount"),  # fullwidth digits
        ("-5", "'-5' is not an amount"),
    ],
)
async def test_refund_takes_amounts_only_as_plain_rubles_and_kopecks(tmp_path: Path, amount: str, reason: str) -> None:
    result = await run_cli("payments", "refund", UNKNOWN_ID, "--amount", amount, "--yes", cwd=tmp_path, env=clean_env())
    assert result.code == 2
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert error.startswith(f"Error: Invalid value for --amount: {reason}")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("amount", "rubles"),
    [("100", "100.00"), ("99.5", "99.50"), ("99.50", "99.50"), ("99,50", "99.50"), (" 7 ", "7.00"), ("0.01", "0.01")],
)
def test_plain_amounts_are_read_as_rubles_and_kopecks(amount: str, rubles: str) -> None:
    assert _amount(amount) == Decimal(rubles)


async def test_refund_from_a_script_needs_yes(services: Services, kassa: FakeYooKassa, tmp_path: Path) -> None:
    """Without a terminal to ask on, the refund went through unconfirmed."""
    payment_id = await paid_month(services, kassa)
    until = await services.subscriptions.premium_until(USER_ID)

    result = await payments(services, tmp_path, "refund", payment_id)
    assert result.code == 2
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        "Error: Not refunding without confirmation: stdin is not a terminal; pass --yes."
    ]
    assert kassa.refund_requests == []
    assert await services.subscriptions.premium_until(USER_ID) == until

    help_text = await payments(services, tmp_path, "refund", "--help")
    assert "scripts" in help_text.stdout


async def test_refund_of_an_unknown_payment_says_so_before_asking(services: Services, tmp_path: Path) -> None:
    """It asked "Refund everything left of payment …?" and only after a "y" said the payment is not ours."""
    result = await payments(services, tmp_path, "refund", UNKNOWN_ID)
    assert result.code == 1
    assert result.stderr.strip() == f"Error: Payment {UNKNOWN_ID} is not one of ours."


async def test_refund_without_yookassa_says_so_before_asking(tmp_path: Path, db_url: str) -> None:
    env = clean_env(POMOGATOR_DATABASE_URL=db_url, POMOGATOR_YOOKASA_SHOP_ID="123")
    result = await run_cli("payments", "refund", UNKNOWN_ID, cwd=tmp_path, env=env)
    assert result.code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and "did you mean POMOGATOR_YOOKASSA_SHOP_ID?" in lines[0]
    assert lines[1] == "Error: POMOGATOR_YOOKASSA_SHOP_ID and POMOGATOR_YOOKASSA_SECRET_KEY are not set."


async def test_list_on_an_80_column_terminal_shows_whole_payment_ids(
    services: Services, kassa: FakeYooKassa, tmp_path: Path
) -> None:
    paid = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(paid.payment_id)
    await services.billing.sync_payment(paid.payment_id)
    pending = await services.billing.start_payment(USER_ID, "year")

    result = await run_in_terminal("payments", "list", cwd=tmp_path, env=billing_env(services.settings))
    assert result.code == 0, result.stderr
    assert "…" not in result.stdout
    for payment_id in (paid.payment_id, pending.payment_id):
        assert f" {payment_id} " in result.stdout
    assert f" {utcnow().astimezone(services.settings.tz):%Y-%m-%d} " in result.stdout


async def test_list_filters_by_user_and_status(services: Services, kassa: FakeYooKassa, tmp_path: Path) -> None:
    paid = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(paid.payment_id)
    await services.billing.sync_payment(paid.payment_id)
    pending = await services.billing.start_payment(USER_ID, "year")

    everything = await payments(services, tmp_path, "list")
    assert everything.code == 0, everything.stderr
    lines = everything.stdout.splitlines()
    assert lines[0].split("\t") == ["payment", "user", "plan", "amount", "status", "refunded", "reason", "created"]
    assert {line.split("\t")[0] for line in lines[1:]} == {paid.payment_id, pending.payment_id}
    assert "token" not in everything.stdout  # confirmation links are not shown

    succeeded = await payments(services, tmp_path, "list", "--status", "succeeded", "--user", str(USER_ID))
    assert [line.split("\t")[:5] for line in succeeded.stdout.splitlines()[1:]] == [
        [paid.payment_id, str(USER_ID), "month", "599.00 RUB", "succeeded"]
    ]
    nobody = await payments(services, tmp_path, "list", "--user", "1")
    assert nobody.stdout.splitlines()[1:] == []
    wrong = await payments(services, tmp_path, "list", "--status", "paid")
    assert wrong.code == 2
    # Listing reads the database alone: no YooKassa keys needed.
    env = {k: v for k, v in billing_env(services.settings).items() if not k.startswith("POMOGATOR_YOOKASSA_SECRET")}
    without_keys = await run_cli("payments", "list", cwd=tmp_path, env=env)
    assert without_keys.code == 0, without_keys.stderr
    assert without_keys.stdout == everything.stdout


async def test_a_list_cut_at_its_limit_says_so(services: Services, tmp_path: Path) -> None:
    first = await services.billing.start_payment(USER_ID, "month")
    second = await services.billing.start_payment(USER_ID, "year")
    cut = await payments(services, tmp_path, "list", "--limit", "1")
    assert cut.code == 0, cut.stderr
    assert [line.split("\t")[0] for line in cut.stdout.splitlines()[1:]] == [second.payment_id]
    assert cut.stderr == "Showing the newest 1 payment; --limit for more.\n"
    whole = await payments(services, tmp_path, "list", "--limit", "2")
    assert {line.split("\t")[0] for line in whole.stdout.splitlines()[1:]} == {first.payment_id, second.payment_id}
    assert whole.stderr == ""


async def test_refund_of_an_erased_persons_payment_takes_the_receipt_email(
    db_url: str, tg: FakeTelegram, tmp_path: Path
) -> None:
    async with FakeYooKassa(require_receipt=True) as kassa:
        settings = billing_settings(db_url, kassa, tg, receipt_enabled=True)
        async with build_services(settings, migrate=True) as services:
            await add_user(services, tg)
            await services.users.set_email(USER_ID, "ann@example.ru")
            checkout = await services.billing.start_payment(USER_ID, "month")
            kassa.succeed(checkout.payment_id)
            await services.billing.sync_payment(checkout.payment_id)
            assert await services.users.delete(USER_ID)
        env = billing_env(settings, POMOGATOR_RECEIPT_ENABLED="true")

        refused = await run_cli("payments", "refund", checkout.payment_id, "--yes", cwd=tmp_path, env=env)
        assert refused.code == 1
        assert "erased their data" in refused.stderr and "--email" in refused.stderr
        assert "Traceback" not in refused.stderr and kassa.refund_requests == []

        args = ("payments", "refund", checkout.payment_id, "--yes", "--email", "ann@example.ru")
        refunded = await run_cli(*args, cwd=tmp_path, env=env)
        assert refunded.code == 0, refunded.stderr
        assert "Refunded 599.00 RUB" in refunded.stderr
        assert kassa.refund_requests[-1].json["receipt"]["customer"] == {"email": "ann@example.ru"}
