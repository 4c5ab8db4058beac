"""The payer's notices of a refund and of a failed payment are kept like the one of a payment that went through:
marked once delivered, sent again by the periodic check (and by a notification delivered again) when Telegram failed
or the process stopped first, once even when two checks run at once, never to a person who blocked the bot or erased
their data, and never for refunds told before they were kept."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from pomogator.container import Services, build_services
from pomogator.notify import SendResult, TelegramNotifier
from pomogator.services import billing as billing_module
from pomogator.services import billing_notices
from pomogator.services.notice_claims import (
    NOTICE_LEASE,
    claim_payer_notice,
    claim_payer_refund_notice,
    payers_untold_of_refunds,
)
from pomogator.services.payments import waiting_payments
from pomogator.store.tables import Payment
from pomogator.timeutil import utcnow
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.yookassa_server import FakeYooKassa
from tests.services.races import NoticeRace, Race
from tests.web.support import USER_ID, add_user, billing_settings


@pytest.fixture
async def services(db_url: str, kassa: FakeYooKassa, tg: FakeTelegram) -> AsyncIterator[Services]:
    async with build_services(billing_settings(db_url, kassa, tg), migrate=True) as built:
        await add_user(built, tg)
        yield built


async def payment_row(payment_id: str) -> dict[str, Any]:
    row = await Payment.select().where(Payment.yookassa_id == payment_id).first()
    assert row is not None
    return row


async def paid(services: Services, kassa: FakeYooKassa) -> str:
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    await services.billing.sync_payment(checkout.payment_id)
    return checkout.payment_id


def refund_notices(tg: FakeTelegram) -> list[str]:
    return [t for t in tg.sent_texts(USER_ID) if t.startswith("↩️")]


def failure_notices(tg: FakeTelegram) -> list[str]:
    return [t for t in tg.sent_texts(USER_ID) if "не прошёл" in t]


def telegram_fails_for_the_payer(tg: FakeTelegram) -> None:
    """Telegram answers the payer's next message with 500."""
    tg.fail_next("sendMessage", 500, chat_id=USER_ID)


async def claims_lapsed(payment_id: str) -> None:
    """As if the claims to tell the payer were taken longer ago than they last."""
    lapsed = utcnow() - NOTICE_LEASE - timedelta(seconds=1)
    mine = Payment.yookassa_id == payment_id
    await Payment.update({Payment.notice_claimed_at: lapsed}).where(mine & Payment.notice_claimed_at.is_not_null())
    await Payment.update({Payment.payer_refund_claimed_at: lapsed}).where(
        mine & Payment.payer_refund_claimed_at.is_not_null()
    )


async def check(services: Services) -> None:
    """The periodic check, as the background job runs it."""
    waiting = await waiting_payments()
    if waiting:
        await services.billing.check_waiting(waiting)


@contextlib.contextmanager
def sent_once_all_tried(monkeypatch: pytest.MonkeyPatch, payer: NoticeRace) -> Iterator[None]:
    """The payer's notices are sent once every process of the race has tried to claim them (``NoticeRace``)."""
    send = TelegramNotifier.send

    async def send_once_all_tried(self: TelegramNotifier, chat_id: int, text: str) -> SendResult:
        if chat_id == USER_ID:
            await payer.all_tried()
        return await send(self, chat_id, text)

    with monkeypatch.context() as patch:
        patch.setattr(TelegramNotifier, "send", send_once_all_tried)
        yield


# --- a refund ----------------------------------------------------------------------------------------------


async def test_a_refund_notice_telegram_failed_to_deliver_is_sent_by_the_next_check_once(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    payment_id = await paid(services, kassa)
    telegram_fails_for_the_payer(tg)
    refunded = await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    assert refunded.changed
    assert refund_notices(tg) == []
    row = await payment_row(payment_id)
    assert Decimal(str(row["payer_told_refunded"])) == 0 and row["payer_refund_claimed_at"] is not None
    # Just recorded: whoever recorded it may be telling the payer right now.
    assert await waiting_payments() == []

    await claims_lapsed(payment_id)
    assert await waiting_payments() == [payment_id]
    await check(services)
    [told] = refund_notices(tg)
    assert "возврат 100 ₽" in told and "Премиум действует до" in told
    assert Decimal(str((await payment_row(payment_id))["payer_told_refunded"])) == Decimal(100)
    await claims_lapsed(payment_id)
    assert await waiting_payments() == []
    await check(services)
    assert len(refund_notices(tg)) == 1


async def test_a_refund_notice_sent_again_tells_all_refunded_since_the_payer_was_last_told(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    """A second refund recorded while the first one's notice waits for the check is told with it, in one notice."""
    payment_id = await paid(services, kassa)
    telegram_fails_for_the_payer(tg)
    await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    await services.billing.refunds.refund(payment_id, Decimal("200.00"))
    assert refund_notices(tg) == []

    await claims_lapsed(payment_id)
    await check(services)
    [told] = refund_notices(tg)
    assert "возврат 300 ₽" in told
    await services.billing.refunds.refund(payment_id, Decimal("50.00"))
    assert "возврат 50 ₽" in refund_notices(tg)[-1] and len(refund_notices(tg)) == 2


async def test_a_refund_notice_lost_as_the_process_stops_is_sent_by_the_check(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment_id = await paid(services, kassa)
    kassa.refund_status = "pending"
    asked = await services.billing.refunds.refund(payment_id, Decimal("299.50"))
    assert asked.refund_id is not None
    kassa.settle_refund(asked.refund_id)
    send = TelegramNotifier.send

    async def stopped(self: TelegramNotifier, chat_id: int, text: str) -> SendResult:
        if chat_id == USER_ID:
            raise asyncio.CancelledError
        return await send(self, chat_id, text)

    with monkeypatch.context() as patch:
        patch.setattr(TelegramNotifier, "send", stopped)
        with pytest.raises(asyncio.CancelledError):
            await services.billing.handle_notification("refund.succeeded", asked.refund_id)
    assert refund_notices(tg) == []
    assert Decimal(str((await payment_row(payment_id))["refunded_amount"])) == Decimal("299.50")

    await claims_lapsed(payment_id)
    await check(services)
    [told] = refund_notices(tg)
    assert "возврат 299,50 ₽" in told


async def test_two_checks_at_once_tell_the_payer_of_a_refund_once(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment_id = await paid(services, kassa)
    telegram_fails_for_the_payer(tg)
    await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    await claims_lapsed(payment_id)
    waiting = await waiting_payments()
    race = Race(
        services.billing.check_waiting(waiting),
        services.billing.check_waiting(waiting),
        services.billing.notices.tell_untold_payers(),
    )
    payer = race.notice()
    # Each process lists the notices owed, then claims each: all have listed before any claims.
    monkeypatch.setattr(billing_notices, "payers_untold_of_refunds", payer.look(payers_untold_of_refunds))
    monkeypatch.setattr(
        billing_notices, "claim_payer_refund_notice", payer.claim(claim_payer_refund_notice, after_looks=True)
    )
    with sent_once_all_tried(monkeypatch, payer):
        await race.run()
    assert race.lined_up
    assert len(refund_notices(tg)) == 1


async def test_a_payer_who_blocked_the_bot_is_not_told_of_a_refund_again_and_again(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    payment_id = await paid(services, kassa)
    tg.block_user(USER_ID)
    await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    assert Decimal(str((await payment_row(payment_id))["payer_told_refunded"])) == Decimal(100)
    await claims_lapsed(payment_id)
    assert await waiting_payments() == []


async def test_a_payer_who_erased_their_data_is_not_told_of_a_refund_again(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    payment_id = await paid(services, kassa)
    telegram_fails_for_the_payer(tg)
    await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    assert await services.users.delete(USER_ID)
    await claims_lapsed(payment_id)
    assert await waiting_payments() == []
    await services.billing.notices.tell_untold_payers()
    assert refund_notices(tg) == []


async def test_a_refund_notice_is_given_up_after_two_days(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    payment_id = await paid(services, kassa)
    telegram_fails_for_the_payer(tg)
    await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    await claims_lapsed(payment_id)
    assert await payers_untold_of_refunds() != []
    assert await payers_untold_of_refunds(utcnow() + timedelta(days=2, minutes=1)) == []


async def test_refunds_told_before_their_notices_were_kept_are_not_told_again(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    """A refund recorded by the version before (which told the payer itself and kept no record of it), or one told
    with its payment: a refund recorded by this version tells the payer of that refund alone."""
    payment_id = await paid(services, kassa)
    await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    await Payment.update({Payment.payer_told_refunded: 0, Payment.payer_refund_claimed_at: None}).where(
        Payment.yookassa_id == payment_id
    )
    assert await payers_untold_of_refunds(utcnow() + NOTICE_LEASE * 2) == []
    await services.billing.refunds.refund(payment_id, Decimal("50.00"))
    first, second = refund_notices(tg)
    assert "возврат 100 ₽" in first and "возврат 50 ₽" in second
    assert Decimal(str((await payment_row(payment_id))["payer_told_refunded"])) == Decimal(150)


# --- a failed payment --------------------------------------------------------------------------------------


async def failed(services: Services, kassa: FakeYooKassa, reason: str = "insufficient_funds") -> str:
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.cancel(checkout.payment_id, reason)
    outcome = await services.billing.handle_notification("payment.canceled", checkout.payment_id)
    assert outcome is not None and outcome.changed
    return checkout.payment_id


async def test_a_failure_notice_telegram_failed_to_deliver_is_sent_by_the_next_check_once(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    telegram_fails_for_the_payer(tg)
    payment_id = await failed(services, kassa)
    assert failure_notices(tg) == []
    assert (await payment_row(payment_id))["notified_at"] is None
    assert await waiting_payments() == []

    await claims_lapsed(payment_id)
    assert await waiting_payments() == [payment_id]
    await check(services)
    [told] = failure_notices(tg)
    assert "недостаточно денег" in told
    assert (await payment_row(payment_id))["notified_at"] is not None
    await claims_lapsed(payment_id)
    assert await waiting_payments() == []
    await services.billing.handle_notification("payment.canceled", payment_id)
    assert len(failure_notices(tg)) == 1


async def test_a_failure_notice_is_sent_by_the_notification_delivered_again(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    telegram_fails_for_the_payer(tg)
    payment_id = await failed(services, kassa)
    again = await services.billing.handle_notification("payment.canceled", payment_id)
    assert again is not None and not again.changed
    assert failure_notices(tg) == []  # the claim has not lapsed: the first may be telling them right now
    await claims_lapsed(payment_id)
    await services.billing.handle_notification("payment.canceled", payment_id)
    assert len(failure_notices(tg)) == 1


async def test_two_checks_at_once_tell_the_payer_of_a_failure_once(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    telegram_fails_for_the_payer(tg)
    payment_id = await failed(services, kassa)
    await claims_lapsed(payment_id)
    waiting = await waiting_payments()
    race = Race(
        services.billing.check_waiting(waiting),
        services.billing.check_waiting(waiting),
        services.billing.handle_notification("payment.canceled", payment_id),
    )
    payer = race.notice()
    monkeypatch.setattr(billing_module, "claim_payer_notice", payer.claim(claim_payer_notice))
    with sent_once_all_tried(monkeypatch, payer):
        await race.run()
    assert race.lined_up
    assert len(failure_notices(tg)) == 1


async def test_a_payer_who_blocked_the_bot_or_erased_their_data_is_not_told_of_a_failure_again(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    tg.block_user(USER_ID)
    blocked = await failed(services, kassa)
    assert (await payment_row(blocked))["notified_at"] is not None
    tg.unblock_user(USER_ID)

    telegram_fails_for_the_payer(tg)
    erased = await failed(services, kassa)
    assert await services.users.delete(USER_ID)
    for payment_id in (blocked, erased):
        await claims_lapsed(payment_id)
    assert await waiting_payments() == []
    assert failure_notices(tg) == []


async def test_a_link_left_to_expire_is_owed_no_notice(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    payment_id = await failed(services, kassa, "expired_on_confirmation")
    await claims_lapsed(payment_id)
    assert await waiting_payments() == []
    assert failure_notices(tg) == []
