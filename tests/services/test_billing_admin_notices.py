"""The admins' notices of payments and refunds are kept like the payer's: marked once sent, sent by the periodic check
when the process that recorded them stopped first (or Telegram or the database failed), to the admins who missed them
alone, once even when two checks run at once, and never again for the payments there were before they were kept."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from loguru import logger

from piccolo_migrations.pomogator_0008_quota_give_backs import ID as LAST_BEFORE_ID
from pomogator.container import Services, build_services
from pomogator.notify import SendResult, TelegramNotifier
from pomogator.services import billing as billing_module
from pomogator.services import billing_notices
from pomogator.services.notice_claims import NOTICE_LEASE, claim_admins_notice, claim_payer_notice, untold_to_admins
from pomogator.services.payments import waiting_payments
from pomogator.store.engine import open_database, raw, shipped_migration_ids
from pomogator.store.tables import Payment, PaymentAdminNotice
from pomogator.timeutil import as_utc, utcnow
from tests.databases import throwaway_postgres
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.yookassa_server import FakeYooKassa
from tests.services.races import Race
from tests.store.support import migrate_up_to
from tests.web.support import ADMIN_ID, USER_ID, add_user, billing_settings

OTHER_ADMIN_ID = 778


@pytest.fixture
async def services(db_url: str, kassa: FakeYooKassa, tg: FakeTelegram) -> AsyncIterator[Services]:
    settings = billing_settings(db_url, kassa, tg, admin_ids=f"{ADMIN_ID},{OTHER_ADMIN_ID}")
    async with build_services(settings, migrate=True) as built:
        await add_user(built, tg)
        tg.add_chat(OTHER_ADMIN_ID)
        yield built


async def payment_row(payment_id: str) -> dict[str, Any]:
    row = await Payment.select().where(Payment.yookassa_id == payment_id).first()
    assert row is not None
    return row


def payment_notices(tg: FakeTelegram, payment_id: str, admin_id: int = ADMIN_ID) -> list[str]:
    return [t for t in tg.sent_texts(admin_id) if t.startswith("💰") and payment_id in t]


def refund_notices(tg: FakeTelegram, payment_id: str, admin_id: int = ADMIN_ID) -> list[str]:
    return [t for t in tg.sent_texts(admin_id) if t.startswith("↩️") and payment_id in t]


def confirmations(tg: FakeTelegram) -> list[str]:
    return [t for t in tg.sent_texts(USER_ID) if "Оплата 599 ₽ получена" in t]


async def claims_lapsed(payment_id: str) -> None:
    """As if the claims to tell the admins and the payer were taken longer ago than they last."""
    lapsed = utcnow() - NOTICE_LEASE - timedelta(seconds=1)
    mine = Payment.yookassa_id == payment_id
    await Payment.update({Payment.admins_claimed_at: lapsed}).where(mine & Payment.admins_claimed_at.is_not_null())
    await Payment.update({Payment.notice_claimed_at: lapsed}).where(mine & Payment.notice_claimed_at.is_not_null())


@contextlib.contextmanager
def process_stops_at(monkeypatch: pytest.MonkeyPatch, *chat_ids: int) -> Iterator[None]:
    """The process is stopped (cancelled) as it sends its first notice to one of ``chat_ids``."""
    send = TelegramNotifier.send

    async def stopped(self: TelegramNotifier, chat_id: int, text: str) -> SendResult:
        if chat_id in chat_ids:
            raise asyncio.CancelledError
        return await send(self, chat_id, text)

    with monkeypatch.context() as patch:
        patch.setattr(TelegramNotifier, "send", stopped)
        with pytest.raises(asyncio.CancelledError):
            yield


async def paid(services: Services, kassa: FakeYooKassa) -> str:
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    await services.billing.sync_payment(checkout.payment_id)
    return checkout.payment_id


# --- the normal path ---------------------------------------------------------------------------------------


async def test_the_admins_notice_of_a_payment_is_marked_once_every_admin_has_it(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    payment_id = await paid(services, kassa)
    assert len(payment_notices(tg, payment_id)) == 1 and len(payment_notices(tg, payment_id, OTHER_ADMIN_ID)) == 1
    row = await payment_row(payment_id)
    assert row["admins_notified_at"] is not None and row["notified_at"] is not None
    # Nothing is owed, however long ago it was recorded.
    await claims_lapsed(payment_id)
    assert await waiting_payments() == [] and await untold_to_admins() == []
    await services.billing.check_waiting([payment_id])
    await services.billing.handle_notification("payment.succeeded", payment_id)
    assert len(payment_notices(tg, payment_id)) == 1 and len(payment_notices(tg, payment_id, OTHER_ADMIN_ID)) == 1


@pytest.mark.parametrize(
    ("error_code", "description", "told"),
    [
        (500, None, False),
        (403, None, True),
        (400, "Bad Request: chat not found", True),
        (400, "Bad Request: message text is empty", False),
        (401, "Unauthorized", False),
        (404, "Not Found", False),
    ],
    ids=["telegram-failed", "admin-blocked-the-bot", "no-such-chat", "bad-request", "stale-bot-token", "wrong-api-url"],
)
async def test_an_admin_who_cannot_get_the_notice_counts_as_told_and_a_failed_send_is_sent_again_to_them_alone(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, error_code: int, description: str | None, told: bool
) -> None:
    """Only what is this admin's (blocked the bot, no such chat) is final: a stale bot token or a wrong Bot API URL,
    mended later, must not lose the notice. Those are logged as errors, without the URL (it holds the token)."""
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    tg.fail_next("sendMessage", error_code, description, chat_id=OTHER_ADMIN_ID)
    records: list[Any] = []
    sink = logger.add(lambda message: records.append(message.record), level="DEBUG")
    try:
        await services.billing.sync_payment(checkout.payment_id)
    finally:
        logger.remove(sink)
    errors = [r["message"] for r in records if r["level"].name == "ERROR"]
    assert len(errors) == (0 if told or error_code >= 500 else 1)
    assert all(str(OTHER_ADMIN_ID) in e and str(error_code) in e for e in errors)
    assert not any(tg.token in r["message"] or tg.token in repr(r["extra"]) for r in records)
    assert len(payment_notices(tg, checkout.payment_id)) == 1
    assert payment_notices(tg, checkout.payment_id, OTHER_ADMIN_ID) == []
    assert len(confirmations(tg)) == 1  # the payer is told all the same
    assert ((await payment_row(checkout.payment_id))["admins_notified_at"] is not None) is told

    await claims_lapsed(checkout.payment_id)
    assert await untold_to_admins() == ([] if told else [(await payment_row(checkout.payment_id))["id"]])
    await services.billing.check_waiting(await waiting_payments())
    # Sent again to the admin who missed it alone.
    assert len(payment_notices(tg, checkout.payment_id, OTHER_ADMIN_ID)) == (0 if told else 1)
    assert len(payment_notices(tg, checkout.payment_id)) == 1
    assert (await payment_row(checkout.payment_id))["admins_notified_at"] is not None
    assert await PaymentAdminNotice.count() == 0  # all told: the payment's own mark says it
    assert await waiting_payments() == []


async def test_a_refund_sent_again_tells_each_admin_what_was_refunded_since_they_were_told(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    payment_id = await paid(services, kassa)
    tg.fail_next("sendMessage", 500, chat_id=OTHER_ADMIN_ID)
    await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    # Recorded while the first notice is still owed to one admin: told with it, by the check.
    await services.billing.refunds.refund(payment_id, Decimal("200.00"))
    assert len(refund_notices(tg, payment_id)) == 1 and refund_notices(tg, payment_id, OTHER_ADMIN_ID) == []

    await claims_lapsed(payment_id)
    await services.billing.check_waiting(await waiting_payments())
    first, second = refund_notices(tg, payment_id)
    assert "Возврат 100 ₽" in first and "Возврат 200 ₽" in second and "всего возвращено 300 ₽" in second
    [other] = refund_notices(tg, payment_id, OTHER_ADMIN_ID)
    assert "Возврат 300 ₽" in other and "всего возвращено 300 ₽" in other
    assert len(payment_notices(tg, payment_id)) == 1 and len(payment_notices(tg, payment_id, OTHER_ADMIN_ID)) == 1
    assert Decimal(str((await payment_row(payment_id))["admins_told_refunded"])) == Decimal(300)
    assert await PaymentAdminNotice.count() == 0
    await claims_lapsed(payment_id)
    assert await waiting_payments() == []


# --- the process stops before the admins are told ----------------------------------------------------------


async def test_a_payment_whose_admins_notice_never_went_out_is_told_by_the_next_check_once(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    with process_stops_at(monkeypatch, ADMIN_ID, OTHER_ADMIN_ID, USER_ID):
        await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert await services.subscriptions.premium_until(USER_ID) is not None
    assert payment_notices(tg, checkout.payment_id) == [] and confirmations(tg) == []
    assert (await payment_row(checkout.payment_id))["admins_notified_at"] is None
    # Just recorded: whoever recorded it may be telling the admins right now.
    assert await waiting_payments() == []
    replay = await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert replay is not None and not replay.changed
    assert payment_notices(tg, checkout.payment_id) == []

    await claims_lapsed(checkout.payment_id)
    assert await waiting_payments() == [checkout.payment_id]
    await services.billing.check_waiting(await waiting_payments())
    [notice] = payment_notices(tg, checkout.payment_id)
    assert str(USER_ID) in notice and "Премиум до" in notice
    assert len(payment_notices(tg, checkout.payment_id, OTHER_ADMIN_ID)) == 1
    assert len(confirmations(tg)) == 1
    # The admins first, then the payer, as when it was recorded.
    chats = [call.params["chat_id"] for call in tg.calls_of("sendMessage") if call.ok]
    assert chats.index(ADMIN_ID) < chats.index(USER_ID)
    assert (await payment_row(checkout.payment_id))["admins_notified_at"] is not None

    await claims_lapsed(checkout.payment_id)
    assert await waiting_payments() == []
    await services.billing.check_waiting([checkout.payment_id])
    await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert len(payment_notices(tg, checkout.payment_id)) == 1 and len(confirmations(tg)) == 1


async def test_a_notification_delivered_again_after_the_process_stopped_tells_the_admins_before_the_payer(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    with process_stops_at(monkeypatch, ADMIN_ID):
        await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    await claims_lapsed(checkout.payment_id)
    await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert len(payment_notices(tg, checkout.payment_id)) == 1 and len(confirmations(tg)) == 1
    chats = [call.params["chat_id"] for call in tg.calls_of("sendMessage") if call.ok]
    assert chats.index(ADMIN_ID) < chats.index(USER_ID)
    assert await waiting_payments() == []


async def test_a_refund_whose_admins_notice_never_went_out_is_told_by_the_next_check_alone(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment_id = await paid(services, kassa)
    await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    with process_stops_at(monkeypatch, ADMIN_ID):
        await services.billing.refunds.refund(payment_id, Decimal("200.00"))
    row = await payment_row(payment_id)
    assert Decimal(str(row["refunded_amount"])) == Decimal(300)
    assert Decimal(str(row["admins_told_refunded"])) == Decimal(100)
    assert len(refund_notices(tg, payment_id)) == 1

    await claims_lapsed(payment_id)
    assert await waiting_payments() == [payment_id]
    await services.billing.check_waiting(await waiting_payments())
    first, second = refund_notices(tg, payment_id)
    assert "Возврат 100 ₽" in first and "Возврат 200 ₽" in second and "всего возвращено 300 ₽" in second
    assert len(refund_notices(tg, payment_id, OTHER_ADMIN_ID)) == 2
    assert len(payment_notices(tg, payment_id)) == 1
    assert Decimal(str((await payment_row(payment_id))["admins_told_refunded"])) == Decimal(300)
    await claims_lapsed(payment_id)
    assert await waiting_payments() == []


async def test_two_checks_at_once_tell_the_admins_once(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The periodic checks of two web processes, and a notification delivered again to a third, at once."""
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    with process_stops_at(monkeypatch, ADMIN_ID, OTHER_ADMIN_ID, USER_ID):
        await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    await claims_lapsed(checkout.payment_id)
    waiting = await waiting_payments()
    race = Race(
        services.billing.check_waiting(waiting),
        services.billing.check_waiting(waiting),
        services.billing.handle_notification("payment.succeeded", checkout.payment_id),
    )
    admins, payer = race.notice(), race.notice()
    monkeypatch.setattr(billing_notices, "claim_admins_notice", admins.claim(claim_admins_notice))
    monkeypatch.setattr(billing_module, "claim_payer_notice", payer.claim(claim_payer_notice))
    send = TelegramNotifier.send

    async def send_once_all_tried(self: TelegramNotifier, chat_id: int, text: str) -> SendResult:
        await (payer if chat_id == USER_ID else admins).all_tried()
        return await send(self, chat_id, text)

    monkeypatch.setattr(TelegramNotifier, "send", send_once_all_tried)
    await race.run()
    assert race.lined_up
    assert len(payment_notices(tg, checkout.payment_id)) == 1
    assert len(payment_notices(tg, checkout.payment_id, OTHER_ADMIN_ID)) == 1
    assert len(confirmations(tg)) == 1
    assert (await payment_row(checkout.payment_id))["admins_notified_at"] is not None


@contextlib.contextmanager
def database_fails_as_the_admins_are_told(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The database connection drops as the admins' notice is looked up after the money moved."""

    async def dropped(row_id: int) -> None:
        raise ConnectionResetError("connection lost")

    with monkeypatch.context() as patch:
        patch.setattr(billing_notices, "owed_to_admins", dropped)
        yield


async def test_a_database_error_as_the_admins_are_told_of_a_payment_leaves_it_to_the_check_and_the_payer_is_told(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The payment is recorded: the notification is answered as handled (YooKassa is not asked to send it again)."""
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    with database_fails_as_the_admins_are_told(monkeypatch):
        outcome = await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert outcome is not None and outcome.changed
    assert len(confirmations(tg)) == 1
    assert payment_notices(tg, checkout.payment_id) == []

    await claims_lapsed(checkout.payment_id)
    await services.billing.check_waiting(await waiting_payments())
    assert len(payment_notices(tg, checkout.payment_id)) == 1
    assert len(payment_notices(tg, checkout.payment_id, OTHER_ADMIN_ID)) == 1
    assert len(confirmations(tg)) == 1


async def test_a_database_error_as_the_admins_are_told_of_a_refund_leaves_it_to_the_check_and_the_refund_stands(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pomogator payments refund`` reports the refund made: an operator told it failed might ask for it again."""
    payment_id = await paid(services, kassa)
    with database_fails_as_the_admins_are_told(monkeypatch):
        outcome = await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    assert outcome.changed and outcome.amount == Decimal(100)
    assert any("100 ₽" in text for text in tg.sent_texts(USER_ID) if text not in confirmations(tg))
    assert refund_notices(tg, payment_id) == []

    await claims_lapsed(payment_id)
    await services.billing.check_waiting(await waiting_payments())
    [notice] = refund_notices(tg, payment_id)
    assert "Возврат 100 ₽" in notice
    assert len(refund_notices(tg, payment_id, OTHER_ADMIN_ID)) == 1
    assert Decimal(str((await payment_row(payment_id))["refunded_amount"])) == Decimal(100)


# --- before the admins' notices were kept ------------------------------------------------------------------


async def test_a_payment_recorded_by_the_version_before_is_not_told_again_with_its_refund(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    """A process of the version before, still running as this one starts, records a payment and a refund of it and
    tells the admins itself, keeping no record of it: a refund recorded by this version tells them of that refund
    alone."""
    payment_id = await paid(services, kassa)
    await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    await Payment.update(
        {Payment.admins_notified_at: None, Payment.admins_claimed_at: None, Payment.admins_told_refunded: 0}
    ).where(Payment.yookassa_id == payment_id)
    assert await untold_to_admins(utcnow() + timedelta(days=1)) == []
    await services.billing.refunds.refund(payment_id, Decimal("50.00"))
    assert len(payment_notices(tg, payment_id)) == 1
    first, second = refund_notices(tg, payment_id)
    assert "Возврат 100 ₽" in first and "Возврат 50 ₽" in second and "всего возвращено 150 ₽" in second
    row = await payment_row(payment_id)
    assert row["admins_notified_at"] is not None and Decimal(str(row["admins_told_refunded"])) == Decimal(150)
    await claims_lapsed(payment_id)
    assert await waiting_payments() == []


OLD_PAYMENT_SQL = (
    "INSERT INTO payments (yookassa_id, telegram_id, plan, amount, currency, status, idempotence_key, "
    "refunded_amount, notified_at, created_at, updated_at) VALUES ({}, {}, 'month', 599, 'RUB', {}, {}, {}, {}, {}, {})"
)


@contextlib.asynccontextmanager
async def database_of_its_own(db_url: str) -> AsyncIterator[str]:
    if db_url.startswith("sqlite"):
        yield db_url
        return
    async with throwaway_postgres(db_url, "pomogator_admins_told", migrate=False) as url:
        yield url


async def test_the_upgrade_marks_the_payments_there_were_as_told_to_the_admins(db_url: str) -> None:
    shipped = shipped_migration_ids()
    async with database_of_its_own(db_url) as url:
        await migrate_up_to(url, LAST_BEFORE_ID)
        async with open_database(url, migrate=False) as database:
            then = utcnow() - timedelta(minutes=30)
            old = (
                ("old-paid", "succeeded", Decimal(0), then),
                ("old-refunded", "succeeded", Decimal("299.50"), then),
                ("old-waiting", "pending", Decimal(0), None),
            )
            for payment_id, status, refunded, notified in old:
                await raw(
                    Payment,
                    OLD_PAYMENT_SQL,
                    payment_id,
                    USER_ID,
                    status,
                    f"key-{payment_id}",
                    refunded,
                    notified,
                    then,
                    then,
                )
            assert await database.migrate() == shipped[shipped.index(LAST_BEFORE_ID) + 1 :]
            rows = {row["yookassa_id"]: row for row in await Payment.select()}
            for payment_id, status, refunded, _ in old:
                told = rows[payment_id]["admins_notified_at"]
                assert (as_utc(told) == then) if status == "succeeded" else told is None, payment_id
                assert Decimal(str(rows[payment_id]["admins_told_refunded"])) == refunded, payment_id
                assert rows[payment_id]["admins_claimed_at"] is None, payment_id
            assert await untold_to_admins(utcnow() + timedelta(days=1)) == []
            assert await waiting_payments() == ["old-waiting"]
