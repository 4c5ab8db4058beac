"""BillingService: what settles a payment besides its first notification — a plan pressed after paying, the periodic
check (notices that did not go out, refunds YooKassa made later), and the lock order shared with erasure."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from loguru import logger
from yookassa import Configuration
from yookassa import Refund as SdkRefund

from piccolo_migrations.pomogator_0006_open_refund import ID as OPEN_REFUND_ID
from pomogator.billing import texts
from pomogator.container import Services, build_services
from pomogator.errors import (
    BillingError,
    DatabaseUnavailable,
    PaymentAlreadyMade,
    PaymentNotVerified,
    PaymentStatusUnknown,
    PaymentUnderReview,
)
from pomogator.notify import SendResult, TelegramNotifier
from pomogator.services import billing as billing_module
from pomogator.services import users as users_module
from pomogator.services.billing import PaymentOutcome
from pomogator.services.billing_notices import BillingNotices
from pomogator.services.notice_claims import NOTICE_LEASE, claim_payer_notice
from pomogator.services.payments import waiting_payments
from pomogator.services.refunds import RefundOutcome
from pomogator.services.subscriptions import SubscriptionService, lock_person
from pomogator.store.engine import open_database, raw, shipped_migration_ids
from pomogator.store.tables import Payment, Subscription
from pomogator.timeutil import as_utc, utcnow
from tests.databases import throwaway_postgres
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.yookassa_server import FakeYooKassa
from tests.services.races import WAIT_S, Race
from tests.store.support import migrate_up_to
from tests.web.support import ADMIN_ID, USER_ID, add_user, billing_settings


@pytest.fixture
async def services(db_url: str, kassa: FakeYooKassa, tg: FakeTelegram) -> AsyncIterator[Services]:
    async with build_services(billing_settings(db_url, kassa, tg), migrate=True) as built:
        await add_user(built, tg)
        yield built


def close_to(actual: datetime | None, expected: datetime) -> bool:
    return actual is not None and abs(as_utc(actual) - expected) < timedelta(minutes=1)


async def payment_row(payment_id: str) -> dict[str, Any]:
    row = await Payment.select().where(Payment.yookassa_id == payment_id).first()
    assert row is not None
    return row


async def paid(services: Services, kassa: FakeYooKassa, plan: str = "month") -> str:
    checkout = await services.billing.start_payment(USER_ID, plan)
    kassa.succeed(checkout.payment_id)
    await services.billing.sync_payment(checkout.payment_id)
    return checkout.payment_id


# --- locks -------------------------------------------------------------------------------------------------


async def test_a_refund_recorded_while_the_person_erases_their_data_does_not_deadlock(
    services: Services, kassa: FakeYooKassa, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording a refund and erasing the person both take the person's lock and the payment's row: in one order,
    or PostgreSQL kills one of them as a deadlock."""
    payment_id = await paid(services, kassa)
    shortening, erasure_locking = asyncio.Event(), asyncio.Event()

    async def erasure_locks(telegram_id: int) -> None:
        erasure_locking.set()
        await lock_person(telegram_id)

    shorten = SubscriptionService.shorten

    async def shorten_once_the_erasure_locks(
        self: SubscriptionService, payment: str, fraction: float
    ) -> datetime | None:
        shortening.set()
        # On SQLite the erasure waits for this whole transaction before it starts: write transactions never overlap.
        if not services.database.is_sqlite:
            await asyncio.wait_for(erasure_locking.wait(), WAIT_S)
            await asked_for_by_another(USER_ID)
        return await shorten(self, payment, fraction)

    monkeypatch.setattr(users_module, "lock_person", erasure_locks)
    monkeypatch.setattr(SubscriptionService, "shorten", shorten_once_the_erasure_locks)
    refunding = asyncio.create_task(services.billing.refunds.refund(payment_id, Decimal("100.00")))
    await asyncio.wait_for(shortening.wait(), 10)
    erased = await services.users.delete(USER_ID)
    refund = await refunding
    assert erased and refund.changed and refund.refunded_total == Decimal("100.00")
    assert await Subscription.count() == 0
    row = await Payment.select().where(Payment.yookassa_id == payment_id).first()
    assert row is not None and row["telegram_id"] is None


async def asked_for_by_another(telegram_id: int) -> None:
    """Wait until a session besides this one has asked PostgreSQL for the person's lock (``lock_person``): it holds
    it, or waits for it."""
    asked = (
        "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = {} AND objsubid = 1"
        " AND pid <> pg_backend_pid() AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    async with asyncio.timeout(WAIT_S):
        while True:
            if await Subscription.raw(asked, telegram_id):
                return
            await asyncio.sleep(0.01)  # PostgreSQL does not announce a lock asked for: look again shortly


# --- a plan pressed again ----------------------------------------------------------------------------------


async def test_a_plan_pressed_after_paying_says_it_is_paid_instead_of_making_a_second_payment(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)  # paid; the notification has not come yet
    with pytest.raises(PaymentAlreadyMade) as made:
        await services.billing.start_payment(USER_ID, "month")
    assert made.value.payment_id == checkout.payment_id
    assert close_to(made.value.premium_until, utcnow() + timedelta(days=30))
    assert len(kassa.created_requests) == 1 and list(kassa.payments) == [checkout.payment_id]
    assert len([t for t in tg.sent_texts(USER_ID) if "Оплата 599 ₽ получена" in t]) == 1
    # Now that it is recorded, a press buys another month.
    another = await services.billing.start_payment(USER_ID, "month")
    assert another.payment_id != checkout.payment_id and not another.reused


async def test_a_plan_pressed_again_while_yookassa_cannot_say_whether_it_was_paid_makes_no_second_payment(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    """The earlier link was handed out and may have been paid: not knowing, the person is told so (not that no money
    was taken), and nothing new is offered to pay."""
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)  # paid; the notification is late, as YooKassa is having trouble
    kassa.down = True
    with pytest.raises(PaymentStatusUnknown):
        await services.billing.start_payment(USER_ID, "month")

    # YooKassa refuses to answer (the shop's keys changed, say): the same for the person, and the admins are alerted.
    kassa.down = False
    secret, kassa.secret_key = kassa.secret_key, "rotated"
    alerts: list[str] = []
    sink = logger.add(lambda m: alerts.append(m.record["extra"]["alert"]), filter=lambda r: "alert" in r["extra"])
    try:
        with pytest.raises(PaymentStatusUnknown):
            await services.billing.start_payment(USER_ID, "month")
    finally:
        logger.remove(sink)
    assert alerts == ["payment"]
    assert len(kassa.created_requests) == 1 and (await payment_row(checkout.payment_id))["status"] == "pending"

    kassa.secret_key = secret
    with pytest.raises(PaymentAlreadyMade):
        await services.billing.start_payment(USER_ID, "month")
    assert len(kassa.created_requests) == 1


async def test_a_checkout_names_the_other_plans_payment_that_can_still_be_paid(
    services: Services, kassa: FakeYooKassa
) -> None:
    month = await services.billing.start_payment(USER_ID, "month")
    assert month.also_pending == ()
    year = await services.billing.start_payment(USER_ID, "year")
    assert year.also_pending == ("month",)
    assert (await services.billing.start_payment(USER_ID, "month")).also_pending == ("year",)
    text = texts.checkout(year.plan, year.amount, year.confirmation_url, reused=False, also_pending=year.also_pending)
    assert "счёт на месяц тоже действует" in text and "Оплатите только один" in text
    kassa.cancel(month.payment_id)
    await services.billing.sync_payment(month.payment_id)
    assert (await services.billing.start_payment(USER_ID, "year")).also_pending == ()


# --- the payer's notice ------------------------------------------------------------------------------------


def confirmations(tg: FakeTelegram) -> list[str]:
    return [t for t in tg.sent_texts(USER_ID) if "Оплата 599 ₽ получена" in t]


async def recorded_a_while_ago(payment_id: str) -> None:
    """As if the last claim to tell the payer was taken longer ago than it lasts."""
    lapsed = utcnow() - NOTICE_LEASE - timedelta(seconds=1)
    await Payment.update({Payment.notice_claimed_at: lapsed}).where(
        (Payment.yookassa_id == payment_id) & Payment.notice_claimed_at.is_not_null()
    )


async def test_a_payers_notice_that_did_not_go_out_is_sent_by_the_next_check(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    tg.fail_next("sendMessage", 500, chat_id=USER_ID)
    assert (await services.billing.sync_payment(checkout.payment_id)).changed
    assert confirmations(tg) == []
    assert (await payment_row(checkout.payment_id))["notified_at"] is None
    # Just recorded: whoever recorded it may be telling the payer right now.
    assert await waiting_payments() == []
    replay = await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert replay is not None and not replay.changed
    assert confirmations(tg) == []

    await recorded_a_while_ago(checkout.payment_id)
    assert await waiting_payments() == [checkout.payment_id]
    assert await services.billing.check_waiting(await waiting_payments()) == 0
    [told] = confirmations(tg)
    assert "активен до" in told
    assert (await payment_row(checkout.payment_id))["notified_at"] is not None
    assert await waiting_payments() == []
    await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert len(confirmations(tg)) == 1
    assert await Subscription.count() == 1


async def test_a_notification_delivered_again_after_a_crash_tells_the_payer(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process stops between recording the payment and telling the payer: YooKassa, unanswered, delivers the
    notification again, and that tells them."""
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)

    async def killed(self: BillingNotices, chat_id: int, text: str) -> bool:
        raise asyncio.CancelledError

    with monkeypatch.context() as patch:
        patch.setattr(BillingNotices, "tell", killed)
        with pytest.raises(asyncio.CancelledError):
            await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert await services.subscriptions.premium_until(USER_ID) is not None
    assert confirmations(tg) == []
    await recorded_a_while_ago(checkout.payment_id)
    again = await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert again is not None and not again.changed
    assert len(confirmations(tg)) == 1
    await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert len(confirmations(tg)) == 1


def payment_notices(tg: FakeTelegram, payment_id: str) -> list[str]:
    return [t for t in tg.sent_texts(ADMIN_ID) if t.startswith("💰") and payment_id in t]


async def test_the_admins_hear_of_a_payment_whose_payers_notice_could_not_be_marked_sent(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database drops just after the payment is recorded, as the payer's delivered notice is marked sent."""
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)

    async def database_gone(row_id: int) -> None:
        raise DatabaseUnavailable("connection lost")

    with monkeypatch.context() as patch:
        patch.setattr(billing_module, "mark_told", database_gone)
        with pytest.raises(DatabaseUnavailable):
            await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert len(confirmations(tg)) == 1
    assert len(payment_notices(tg, checkout.payment_id)) == 1
    # YooKassa, answered 503, delivers it again: recorded already, and the admins were told.
    again = await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert again is not None and not again.changed
    assert len(payment_notices(tg, checkout.payment_id)) == 1


async def test_the_admins_hear_of_a_payment_though_the_process_stops_while_telling_the_payer(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    tell = BillingNotices.tell

    async def stopped_at_the_payer(self: BillingNotices, chat_id: int, text: str) -> bool:
        if chat_id == USER_ID:
            raise asyncio.CancelledError
        return await tell(self, chat_id, text)

    with monkeypatch.context() as patch:
        patch.setattr(BillingNotices, "tell", stopped_at_the_payer)
        with pytest.raises(asyncio.CancelledError):
            await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert len(payment_notices(tg, checkout.payment_id)) == 1
    await recorded_a_while_ago(checkout.payment_id)
    await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert len(confirmations(tg)) == 1 and len(payment_notices(tg, checkout.payment_id)) == 1


async def test_two_processes_owing_the_payer_the_notice_at_once_send_it_once(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The periodic check of one web process and a notification delivered again to another, at once."""
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    tg.fail_next("sendMessage", 500, chat_id=USER_ID)
    await services.billing.sync_payment(checkout.payment_id)
    await recorded_a_while_ago(checkout.payment_id)
    race = Race(
        services.billing.check_waiting(await waiting_payments()),
        services.billing.handle_notification("payment.succeeded", checkout.payment_id),
    )
    payer = race.notice()
    monkeypatch.setattr(billing_module, "claim_payer_notice", payer.claim(claim_payer_notice))
    send = TelegramNotifier.send

    async def send_once_both_tried(self: TelegramNotifier, chat_id: int, text: str) -> SendResult:
        if chat_id == USER_ID:
            await payer.all_tried()
        return await send(self, chat_id, text)

    monkeypatch.setattr(TelegramNotifier, "send", send_once_both_tried)
    await race.run()
    assert race.lined_up
    assert len(confirmations(tg)) == 1
    assert (await payment_row(checkout.payment_id))["notified_at"] is not None


async def test_a_told_payment_is_not_asked_about_again(services: Services, kassa: FakeYooKassa) -> None:
    payment_id = await paid(services, kassa)
    assert (await payment_row(payment_id))["notified_at"] is not None
    await recorded_a_while_ago(payment_id)
    assert await waiting_payments() == []


# --- refunds YooKassa makes later --------------------------------------------------------------------------


async def test_a_pending_refund_is_recorded_by_the_check_once_it_succeeds(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    payment_id = await paid(services, kassa)
    kassa.refund_status = "pending"
    asked = await services.billing.refunds.refund(payment_id, Decimal("299.50"))
    assert asked.status == "pending" and not asked.changed and asked.refund_id is not None
    assert (await payment_row(payment_id))["refund_waiting_id"] == asked.refund_id
    assert await waiting_payments() == [payment_id]
    assert await services.billing.check_waiting([payment_id]) == 0  # still pending: asked about again next time
    assert await waiting_payments() == [payment_id]

    with pytest.raises(BillingError, match="still pending"):
        await services.billing.refunds.refund(payment_id, Decimal("100.00"))  # it would take the first one's place
    assert (await payment_row(payment_id))["refund_waiting_id"] == asked.refund_id

    kassa.settle_refund(asked.refund_id)
    assert await services.billing.check_waiting(await waiting_payments()) == 1
    row = await payment_row(payment_id)
    assert Decimal(str(row["refunded_amount"])) == Decimal("299.50") and row["refund_waiting_id"] is None
    assert close_to(await services.subscriptions.premium_until(USER_ID), utcnow() + timedelta(days=15))
    assert len([t for t in tg.sent_texts(USER_ID) if "возврат" in t.lower()]) == 1
    assert await waiting_payments() == []
    # Its notification, come late, finds it recorded.
    late = await services.billing.handle_notification("refund.succeeded", asked.refund_id)
    assert late is not None and not late.changed


async def dashboard_refund(kassa: FakeYooKassa, payment_id: str, amount: str, key: str | None = None) -> str:
    """A refund made in YooKassa's dashboard (or asked for with idempotence ``key``); returns its id."""
    Configuration.configure(kassa.shop_id, kassa.secret_key, api_url=kassa.api_url)
    body = {"payment_id": payment_id, "amount": {"value": amount, "currency": "RUB"}}
    refund = await asyncio.to_thread(SdkRefund.create, body, key or f"dashboard-{payment_id}-{amount}")
    return str(refund.id)


async def test_a_refund_asked_for_and_not_recorded_is_recorded_by_the_check_which_asks_for_none(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    """`payments refund` stopped (Ctrl-C, SIGTERM) after YooKassa made the refund: only a refund.succeeded
    notification or `payments check` recorded it, and the periodic check never asked about the payment."""
    payment_id = await paid(services, kassa)
    await recorded_a_while_ago(payment_id)
    # As the stopped run left it: its key kept, the refund asked for with it.
    key, asked_at = "refund-key-of-a-stopped-run", utcnow()
    await Payment.update(
        {Payment.refund_key: key, Payment.refund_key_amount: Decimal("299.50"), Payment.refund_key_at: asked_at}
    ).where(Payment.yookassa_id == payment_id)
    assert await waiting_payments() == [payment_id]
    assert await services.billing.check_waiting([payment_id]) == 0  # YooKassa has made none: nothing to record
    refund_id = await dashboard_refund(kassa, payment_id, "299.50", key)
    requests = len(kassa.refund_requests)

    assert await waiting_payments() == [payment_id]
    assert await services.billing.check_waiting(await waiting_payments()) == 1
    row = await payment_row(payment_id)
    assert Decimal(str(row["refunded_amount"])) == Decimal("299.50")
    assert close_to(await services.subscriptions.premium_until(USER_ID), utcnow() + timedelta(days=15))
    assert len([t for t in tg.sent_texts(USER_ID) if "возврат" in t.lower()]) == 1
    assert len(kassa.refund_requests) == requests and list(kassa.refunds) == [refund_id]  # none asked for

    # A key YooKassa no longer keeps is not asked about.
    await Payment.update({Payment.refund_key: key, Payment.refund_key_at: asked_at - timedelta(hours=25)}).where(
        Payment.yookassa_id == payment_id
    )
    assert await waiting_payments() == []


@pytest.mark.parametrize(
    ("other_premium", "refunded", "premium_after"),
    [(False, "599.00", None), (True, "599.00", 365), (False, "299.50", 15)],
    ids=["in-full", "in-full-beside-a-year", "in-part"],
)
async def test_a_payment_refunded_before_its_success_was_heard_is_told_as_refunded(
    services: Services,
    kassa: FakeYooKassa,
    tg: FakeTelegram,
    other_premium: bool,
    refunded: str,
    premium_after: int | None,
) -> None:
    """The payment's notification was lost, the payer complained, and the operator refunded it in the dashboard:
    the refund's notification records both, and the payer and the admins hear of both."""
    if other_premium:
        async with services.database.transaction():
            await services.subscriptions.grant(USER_ID, 365, plan="manual")
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    refund_id = await dashboard_refund(kassa, checkout.payment_id, refunded)

    outcome = await services.billing.handle_notification("refund.succeeded", refund_id)
    assert outcome is not None and outcome.changed
    assert Decimal(str((await payment_row(checkout.payment_id))["refunded_amount"])) == Decimal(refunded)
    until = await services.subscriptions.premium_until(USER_ID)
    if premium_after is None:
        assert until is None
    else:
        assert close_to(until, utcnow() + timedelta(days=premium_after))
    [told] = tg.sent_texts(USER_ID)
    amount = texts.rubles(Decimal(refunded))
    assert "Оплата 599 ₽ получена" in told and f"возврат {amount}" in told and "на месяц" not in told
    assert ("Премиум отключён" if until is None else f"до {texts.when(until, services.settings.tz)}") in told
    to_admins = [t for t in tg.sent_texts(ADMIN_ID) if checkout.payment_id in t]
    assert len(to_admins) == 2
    assert "Оплата 599 ₽" in to_admins[0] and f"Возврат {amount}" in to_admins[1]

    # Delivered again, and asked about by the check: recorded once, told once.
    again = await services.billing.handle_notification("refund.succeeded", refund_id)
    assert again is not None and not again.changed
    assert not (await services.billing.sync_payment(checkout.payment_id)).changed
    assert len(tg.sent_texts(USER_ID)) == 1 and len(tg.sent_texts(ADMIN_ID)) == 2
    assert Decimal(str((await payment_row(checkout.payment_id))["refunded_amount"])) == Decimal(refunded)


async def test_a_payment_refunded_before_its_success_was_heard_is_applied_once_by_the_check(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    """Neither notification came: the periodic check finds the payment paid and refunded."""
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    await dashboard_refund(kassa, checkout.payment_id, "599.00")
    await Payment.update({Payment.created_at: utcnow() - timedelta(minutes=11)}, force=True)
    assert await services.billing.check_waiting(await waiting_payments()) == 1
    assert await services.subscriptions.premium_until(USER_ID) is None
    [told] = tg.sent_texts(USER_ID)
    assert "возврат 599 ₽" in told and "Премиум отключён" in told
    assert any("Возврат 599 ₽" in t for t in tg.sent_texts(ADMIN_ID))


async def test_a_pending_refund_that_is_canceled_is_forgotten_and_the_admins_hear_of_it(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    payment_id = await paid(services, kassa)
    kassa.refund_status = "pending"
    asked = await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    assert asked.refund_id is not None
    kassa.settle_refund(asked.refund_id, "canceled")
    assert await services.billing.check_waiting(await waiting_payments()) == 0
    row = await payment_row(payment_id)
    assert Decimal(str(row["refunded_amount"])) == 0 and row["refund_waiting_id"] is None
    assert await waiting_payments() == []
    assert close_to(await services.subscriptions.premium_until(USER_ID), utcnow() + timedelta(days=30))
    assert any(asked.refund_id in t and "отменён" in t for t in tg.sent_texts(ADMIN_ID))


# --- a payment that does not match our record of it -------------------------------------------------------


async def not_matching(services: Services, kassa: FakeYooKassa) -> str:
    """A payment YooKassa reports paid for someone else than the person it was made for: not verified."""
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.payments[checkout.payment_id]["metadata"] = {"telegram_id": "1", "plan": "month"}
    kassa.succeed(checkout.payment_id)
    return checkout.payment_id


async def test_a_plan_pressed_again_after_an_unverified_payment_is_not_paid_a_second_time(
    services: Services, kassa: FakeYooKassa
) -> None:
    payment_id = await not_matching(services, kassa)
    # Found out by this press (its notification has not come), and by the next one.
    for _ in range(2):
        with pytest.raises(PaymentUnderReview):
            await services.billing.start_payment(USER_ID, "month")
    assert (await payment_row(payment_id))["status"] == "unverified"
    assert len(kassa.created_requests) == 1
    # Another plan is another purchase.
    assert (await services.billing.start_payment(USER_ID, "year")).payment_id != payment_id

    # Refunded: the person may buy again.
    await services.billing.refunds.refund(payment_id)
    assert (await services.billing.start_payment(USER_ID, "month")).payment_id != payment_id


@pytest.mark.parametrize("where", ["command", "dashboard"])
async def test_an_unverified_payment_can_be_refunded_and_the_refund_is_recorded_once(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, where: str
) -> None:
    payment_id = await not_matching(services, kassa)
    with pytest.raises(PaymentNotVerified):
        await services.billing.handle_notification("payment.succeeded", payment_id)

    outcome: PaymentOutcome | RefundOutcome | None
    if where == "command":
        outcome = await services.billing.refunds.refund(payment_id)
        refund_id = outcome.refund_id
        assert refund_id is not None
    else:
        refund_id = await dashboard_refund(kassa, payment_id, "599.00")
        outcome = await services.billing.handle_notification("refund.succeeded", refund_id)
    assert isinstance(outcome, RefundOutcome) and outcome.changed and outcome.refunded_total == Decimal(599)
    again = await services.billing.handle_notification("refund.succeeded", refund_id)
    assert again is not None and not again.changed
    with pytest.raises(BillingError, match="already fully refunded"):
        await services.billing.refunds.refund(payment_id)

    row = await payment_row(payment_id)
    assert row["status"] == "unverified" and Decimal(str(row["refunded_amount"])) == Decimal(599)
    assert len(kassa.refunds) == 1 and await Subscription.count() == 0
    assert [t for t in tg.sent_texts(USER_ID) if "возврат 599 ₽" in t]
    assert [t for t in tg.sent_texts(ADMIN_ID) if "Возврат 599 ₽" in t and payment_id in t]


async def test_a_pending_refund_of_an_unverified_payment_is_recorded_by_the_check(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    """The refund, the remedy for a payment that does not match our record, is answered as pending, and its
    notification never comes: the periodic check asks about it until it is made, then records it, the admins hear
    of it, and the person may buy the plan again. No premium, ever."""
    payment_id = await not_matching(services, kassa)
    with pytest.raises(PaymentNotVerified):
        await services.billing.handle_notification("payment.succeeded", payment_id)
    kassa.refund_status = "pending"
    asked = await services.billing.refunds.refund(payment_id)
    assert asked.status == "pending" and asked.refund_id is not None
    assert await waiting_payments() == [payment_id]
    assert await services.billing.check_waiting([payment_id]) == 0  # still pending
    assert await waiting_payments() == [payment_id]
    with pytest.raises(PaymentUnderReview):
        await services.billing.start_payment(USER_ID, "month")

    kassa.settle_refund(asked.refund_id)
    await services.billing.check_waiting(await waiting_payments())
    row = await payment_row(payment_id)
    assert row["status"] == "unverified" and Decimal(str(row["refunded_amount"])) == Decimal(599)
    assert row["refund_waiting_id"] is None and await waiting_payments() == []
    assert await Subscription.count() == 0 and await services.subscriptions.premium_until(USER_ID) is None
    assert [t for t in tg.sent_texts(USER_ID) if "возврат 599 ₽" in t]
    await tg.wait_until(
        lambda: any("Возврат 599 ₽" in t and payment_id in t for t in tg.sent_texts(ADMIN_ID)), what="admin notice"
    )
    assert (await services.billing.start_payment(USER_ID, "month")).payment_id != payment_id
    # Its notification, come late, finds it recorded.
    late = await services.billing.handle_notification("refund.succeeded", asked.refund_id)
    assert late is not None and not late.changed


@pytest.mark.parametrize("by", ["payments check", "periodic check", "payment notification"])
async def test_a_refund_of_an_unverified_payment_whose_notification_was_lost_is_recorded(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, by: str
) -> None:
    """The payment does not match our record, the operator refunds it in YooKassa's dashboard, and the refund's
    notification is lost: whatever asks YooKassa about the payment next records the refund (and still refuses the
    payment), so the person is no longer kept from buying the plan."""
    payment_id = await not_matching(services, kassa)
    await dashboard_refund(kassa, payment_id, "599.00")
    if by == "periodic check":
        await Payment.update({Payment.created_at: utcnow() - timedelta(minutes=11)}, force=True)
        assert await waiting_payments() == [payment_id]
        await services.billing.check_waiting([payment_id])  # the payment refused, the check goes on
    else:
        with pytest.raises(PaymentNotVerified):
            if by == "payments check":
                await services.billing.sync_payment(payment_id)
            else:
                await services.billing.handle_notification("payment.succeeded", payment_id)

    row = await payment_row(payment_id)
    assert row["status"] == "unverified" and Decimal(str(row["refunded_amount"])) == Decimal(599)
    assert await Subscription.count() == 0 and await services.subscriptions.premium_until(USER_ID) is None
    await tg.wait_until(
        lambda: any("Возврат 599 ₽" in t and payment_id in t for t in tg.sent_texts(ADMIN_ID)), what="admin notice"
    )
    assert (await services.billing.start_payment(USER_ID, "month")).payment_id != payment_id
    # Asked about again, it is recorded once.
    with pytest.raises(PaymentNotVerified):
        await services.billing.sync_payment(payment_id)
    assert len([t for t in tg.sent_texts(USER_ID) if "возврат 599 ₽" in t]) == 1


async def test_an_unverified_payment_gives_no_premium_once_the_person_it_was_made_for_erased_their_data(
    services: Services, kassa: FakeYooKassa
) -> None:
    """It was paid for someone else than the person it was made for. Once they erase their data the row names no
    one to compare the payment with; it stays unverified, and nobody gets premium for it."""
    payment_id = await not_matching(services, kassa)
    with pytest.raises(PaymentNotVerified):
        await services.billing.sync_payment(payment_id)
    assert await services.users.delete(USER_ID)
    for _ in range(2):
        with pytest.raises(PaymentNotVerified):
            await services.billing.handle_notification("payment.succeeded", payment_id)
    row = await payment_row(payment_id)
    assert row["status"] == "unverified" and row["telegram_id"] is None
    assert await Subscription.count() == 0
    assert not await services.users.exists(1)


# --- the migration -----------------------------------------------------------------------------------------

OLD_PAYMENT_SQL = (
    "INSERT INTO payments (yookassa_id, telegram_id, plan, amount, currency, status, idempotence_key, "
    "refunded_amount, created_at, updated_at) VALUES ({}, {}, 'month', 599, 'RUB', {}, {}, 0, {}, {})"
)


@contextlib.asynccontextmanager
async def database_of_its_own(db_url: str) -> AsyncIterator[str]:
    if db_url.startswith("sqlite"):
        yield db_url
        return
    async with throwaway_postgres(db_url, "pomogator_notified", migrate=False) as url:
        yield url


async def test_payments_that_succeeded_before_the_upgrade_are_not_told_again(db_url: str) -> None:
    shipped = shipped_migration_ids()
    async with database_of_its_own(db_url) as url:
        await migrate_up_to(url, shipped[shipped.index(OPEN_REFUND_ID)])
        async with open_database(url, migrate=False) as database:
            then = utcnow() - timedelta(minutes=30)
            for payment_id, status in (("old-paid", "succeeded"), ("old-waiting", "pending")):
                await raw(Payment, OLD_PAYMENT_SQL, payment_id, USER_ID, status, f"key-{payment_id}", then, then)
            await database.migrate()
            # Recorded and told by the code before: no claim to tell the payer, so nothing is owed.
            assert await waiting_payments() == ["old-waiting"]
