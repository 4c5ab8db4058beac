"""ReminderService against the fake Bot API: a reminder that did not go out is tried again, but not to a person who
blocked the bot."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from pomogator.container import Services, build_services
from pomogator.services.reminders import ReminderService
from pomogator.store.tables import Subscription
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.yookassa_server import FakeYooKassa
from tests.web.support import USER_ID, add_user, billing_settings, until

ENDING = "Премиум закончится"


@pytest.fixture
async def services(db_url: str, kassa: FakeYooKassa, tg: FakeTelegram) -> AsyncIterator[Services]:
    async with build_services(billing_settings(db_url, kassa, tg), migrate=True) as built:
        await add_user(built, tg)
        async with built.database.transaction():
            await built.subscriptions.grant(USER_ID, 2, plan="manual")
        yield built


@pytest.fixture
def reminders(services: Services) -> ReminderService:
    assert services.reminders is not None
    return services.reminders


async def reminded() -> bool:
    rows = await Subscription.select(Subscription.reminded_at).where(Subscription.telegram_id == USER_ID)
    return rows[0]["reminded_at"] is not None


def reminders_sent(tg: FakeTelegram) -> int:
    return sum(ENDING in text for text in tg.sent_texts(USER_ID))


async def test_a_reminder_telegram_did_not_take_is_sent_by_the_next_run(
    reminders: ReminderService, tg: FakeTelegram
) -> None:
    tg.fail_next("sendMessage", 500, chat_id=USER_ID)
    assert await reminders.send_due() == 0
    assert not await reminded()
    assert reminders_sent(tg) == 0

    assert await reminders.send_due() == 1
    assert await reminded()
    assert reminders_sent(tg) == 1
    assert await reminders.send_due() == 0
    assert reminders_sent(tg) == 1


async def test_a_person_who_blocked_the_bot_is_not_reminded_again(reminders: ReminderService, tg: FakeTelegram) -> None:
    tg.block_user(USER_ID)
    assert await reminders.send_due() == 0
    # Telegram's 403 will not change by asking again: the reminder counts as done.
    assert await reminded()
    tg.unblock_user(USER_ID)
    assert await reminders.send_due() == 0
    assert len(tg.calls_of("sendMessage")) == 1
    assert reminders_sent(tg) == 0


async def test_a_reminder_cancelled_while_sending_is_given_back(reminders: ReminderService, tg: FakeTelegram) -> None:
    tg.hold("sendMessage")
    run = asyncio.create_task(reminders.send_due())
    await until(lambda: tg.active_requests > 0, what="the reminder in flight")
    assert await reminded()
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run
    tg.release("sendMessage")
    assert not await reminded()
    assert await reminders.send_due() == 1


@pytest.mark.parametrize("reminded_first", [True, False], ids=["reminded-before", "not-yet"])
async def test_a_renewal_refunded_before_it_began_is_not_a_second_reminder(
    services: Services, reminders: ReminderService, kassa: FakeYooKassa, tg: FakeTelegram, reminded_first: bool
) -> None:
    if reminded_first:
        assert await reminders.send_due() == 1
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    await services.billing.sync_payment(checkout.payment_id)
    await services.billing.refunds.refund(checkout.payment_id)  # in full: the renewal ends where it would have begun
    assert await reminders.send_due() == (0 if reminded_first else 1)
    assert await reminders.send_due() == 0
    assert len([t for t in tg.sent_texts(USER_ID) if ENDING in t]) == 1


async def test_without_payments_the_reminder_points_to_support_not_to_billing(
    db_url: str, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    """Premium given with `pomogator user grant-premium` where no shop is configured: /billing only says premium is
    coming, so the reminder does not send the person there."""
    settings = billing_settings(
        db_url, kassa, tg, yookassa_shop_id=None, yookassa_secret_key=None, support_contact="@shop_help"
    )
    async with build_services(settings, migrate=True) as services:
        assert not settings.billing_configured and services.reminders is not None
        await add_user(services, tg)
        async with services.database.transaction():
            await services.subscriptions.grant(USER_ID, 2, plan="manual")
        assert await services.reminders.send_due() == 1
    [reminder] = tg.sent_texts(USER_ID)
    assert ENDING in reminder and "/billing" not in reminder and "платёж" not in reminder
    assert "@shop_help" in reminder
