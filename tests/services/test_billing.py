"""BillingService and ReminderService against the fake YooKassa (through the real SDK) and the fake Bot API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from loguru import logger
from yookassa import Configuration
from yookassa import Refund as SdkRefund

from pomogator.billing.yookassa import YooKassaClient, YooKassaConfig
from pomogator.container import Services, build_services
from pomogator.errors import (
    BillingError,
    EmailRequired,
    InvalidEmail,
    PaymentNotFound,
    PaymentNotVerified,
    PaymentProviderUnavailable,
    PaymentRejected,
    RefundEmailRequired,
)
from pomogator.logs.records import telegram_id_of
from pomogator.services.billing import PaymentOutcome, _reusable
from pomogator.services.payments import Plan, list_payments, waiting_payments
from pomogator.services.refunds import RefundOutcome, RefundService
from pomogator.store.tables import Payment, Subscription
from pomogator.timeutil import as_utc, utcnow
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.yookassa_server import FakeYooKassa
from tests.web.support import ADMIN_ID, USER_ID, add_user, billing_settings, until

if TYPE_CHECKING:
    from loguru import Record


@pytest.fixture
async def services(db_url: str, kassa: FakeYooKassa, tg: FakeTelegram) -> AsyncIterator[Services]:
    async with build_services(billing_settings(db_url, kassa, tg), migrate=True) as built:
        await add_user(built, tg)
        yield built


async def payment_row(payment_id: str) -> dict[str, object]:
    row = await Payment.select().where(Payment.yookassa_id == payment_id).first()
    assert row is not None
    return row


def close_to(actual: object, expected: object, slack: timedelta = timedelta(minutes=1)) -> bool:
    assert actual is not None and expected is not None
    return abs(as_utc(actual) - as_utc(expected)) < slack  # type: ignore[arg-type]


# --- checkout ----------------------------------------------------------------------------------------------


async def test_pressing_a_plan_creates_a_redirect_payment_with_a_stored_idempotence_key(
    services: Services, kassa: FakeYooKassa
) -> None:
    kassa.hang = True
    pressing = asyncio.create_task(services.billing.start_payment(USER_ID, "month"))
    await until(lambda: bool(kassa.created_requests))
    # The row and its key exist while YooKassa is still being asked.
    rows = await Payment.select().where(Payment.telegram_id == USER_ID)
    assert len(rows) == 1 and rows[0]["status"] == "new"
    assert rows[0]["idempotence_key"] == kassa.created_requests[0].idempotence_key
    kassa.hang = False
    checkout = await pressing

    request = kassa.created_requests[0].json
    assert request["amount"] == {"value": "599.00", "currency": "RUB"}
    assert request["capture"] is True
    assert request["confirmation"] == {"type": "redirect", "return_url": services.settings.payment_return_url}
    assert request["metadata"]["telegram_id"] == str(USER_ID)
    assert request["metadata"]["plan"] == "month"
    assert "receipt" not in request
    assert checkout.confirmation_url == kassa.confirmation_url(checkout.payment_id)
    assert checkout.amount == Decimal(599) and checkout.plan == "month" and not checkout.reused
    row = await payment_row(checkout.payment_id)
    assert row["status"] == "pending"
    assert row["confirmation_url"] == checkout.confirmation_url


async def test_year_plan_uses_its_price(services: Services, kassa: FakeYooKassa) -> None:
    checkout = await services.billing.start_payment(USER_ID, "year")
    assert kassa.payments[checkout.payment_id]["amount"]["value"] == "1999.00"
    assert kassa.payments[checkout.payment_id]["metadata"]["plan"] == "year"


async def test_pressing_again_reuses_the_pending_payment_until_it_is_no_longer_pending(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    first = await services.billing.start_payment(USER_ID, "month")
    again = await services.billing.start_payment(USER_ID, "month")
    assert again.payment_id == first.payment_id and again.reused
    assert again.confirmation_url == first.confirmation_url
    assert len(kassa.created_requests) == 1

    other_plan = await services.billing.start_payment(USER_ID, "year")
    assert other_plan.payment_id != first.payment_id

    kassa.cancel(first.payment_id, "expired_on_confirmation")
    fresh = await services.billing.start_payment(USER_ID, "month")
    assert fresh.payment_id != first.payment_id and not fresh.reused
    assert (await payment_row(first.payment_id))["status"] == "canceled"
    # A link left unpaid until it expired is no failed payment to tell about (the year may have been paid meanwhile).
    assert not any("не прошёл" in text for text in tg.sent_texts(USER_ID))


async def test_a_link_still_payable_is_offered_again_after_the_first_quarter_hour(
    services: Services, kassa: FakeYooKassa
) -> None:
    # Pressed again an hour later: a second link could be paid beside the first, so the first is offered while
    # YooKassa keeps it payable.
    first = await services.billing.start_payment(USER_ID, "month")
    await Payment.update({Payment.created_at: utcnow() - timedelta(hours=1)}).where(
        Payment.yookassa_id == first.payment_id
    )
    again = await services.billing.start_payment(USER_ID, "month")
    assert again.payment_id == first.payment_id and again.reused
    assert len(kassa.created_requests) == 1
    kassa.cancel(first.payment_id, "expired_on_confirmation")
    fresh = await services.billing.start_payment(USER_ID, "month")
    assert fresh.payment_id != first.payment_id and not fresh.reused


def test_a_pending_link_is_offered_again_only_at_the_plans_price_and_days() -> None:
    month = Plan("month", Decimal(599), 30)
    pending = {"status": "pending", "amount": Decimal(599), "days": 30, "created_at": utcnow() - timedelta(days=1)}
    assert _reusable(pending, month)
    assert _reusable({**pending, "days": None}, month)  # a payment made before days were stored
    assert not _reusable({**pending, "amount": Decimal(499)}, month)  # the price changed since
    assert not _reusable({**pending, "days": 45}, month)  # the days changed since: it would grant 45, not 30
    unanswered = {"status": "new", "amount": Decimal(599), "created_at": utcnow() - timedelta(minutes=20)}
    assert not _reusable(unanswered, month)
    assert _reusable({**unanswered, "created_at": utcnow() - timedelta(minutes=5)}, month)


async def test_two_presses_at_once_make_one_payment(services: Services, kassa: FakeYooKassa) -> None:
    for presses in range(1, 6):
        await Payment.delete(force=True)
        first, second = await asyncio.gather(
            services.billing.start_payment(USER_ID, "month"), services.billing.start_payment(USER_ID, "month")
        )
        assert first.payment_id == second.payment_id
        assert len(kassa.payments) == presses
        assert await Payment.count() == 1


async def test_a_slow_answer_to_an_earlier_press_does_not_undo_the_payment(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    kassa.hold_answers = True
    first_press = asyncio.create_task(services.billing.start_payment(USER_ID, "month"))
    await until(lambda: bool(kassa.payments))
    # The second press asks again with the same idempotence key and is answered at once; the person pays.
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    paid = await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert isinstance(paid, PaymentOutcome) and paid.changed
    kassa.hold_answers = False
    assert (await first_press).payment_id == checkout.payment_id

    assert (await payment_row(checkout.payment_id))["status"] == "succeeded"
    again = await services.billing.sync_payment(checkout.payment_id)
    assert not again.changed
    assert await Subscription.count() == 1
    assert close_to(await services.subscriptions.premium_until(USER_ID), utcnow() + timedelta(days=30))
    assert len([t for t in tg.sent_texts(USER_ID) if "Оплата 599 ₽ получена" in t]) == 1


async def test_api_down_leaves_a_recorded_failure_and_the_retry_reuses_the_key(
    services: Services, kassa: FakeYooKassa
) -> None:
    kassa.down = True
    with pytest.raises(PaymentProviderUnavailable):
        await services.billing.start_payment(USER_ID, "month")
    rows = await Payment.select().where(Payment.telegram_id == USER_ID)
    assert [(r["status"], r["yookassa_id"]) for r in rows] == [("error", None)]

    kassa.down = False
    checkout = await services.billing.start_payment(USER_ID, "month")
    keys = [r.idempotence_key for r in kassa.created_requests]
    assert keys == [rows[0]["idempotence_key"]] * 2
    assert list(kassa.payments) == [checkout.payment_id]
    assert await Payment.count().where(Payment.telegram_id == USER_ID) == 1


async def test_a_timeout_then_a_retry_makes_exactly_one_payment(
    db_url: str, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    # Short enough to give up on a request that hangs, long enough for the retry's calls on a loaded machine.
    settings = billing_settings(db_url, kassa, tg, yookassa_timeout=1.5)
    async with build_services(settings, migrate=True) as services:
        await add_user(services, tg)
        kassa.hang = True
        with pytest.raises(PaymentProviderUnavailable):
            await services.billing.start_payment(USER_ID, "month")
        # YooKassa finishes the lost request after all: the payment exists, the user never saw its link.
        kassa.hang = False
        await until(lambda: len(kassa.payments) == 1, what="the lost payment made")
        checkout = await services.billing.start_payment(USER_ID, "month")
        assert len(kassa.payments) == 1
        assert checkout.payment_id in kassa.payments
        assert len({r.idempotence_key for r in kassa.created_requests}) == 1


async def test_a_rejected_request_is_marked_failed_and_a_new_press_starts_over(
    services: Services, kassa: FakeYooKassa
) -> None:
    kassa.secret_key = "rotated"
    alerts: list[dict[str, Any]] = []
    sink = logger.add(lambda m: alerts.append(m.record["extra"]), filter=lambda r: "alert" in r["extra"])
    try:
        with pytest.raises(PaymentRejected):
            await services.billing.start_payment(USER_ID, "month")
    finally:
        logger.remove(sink)
    assert [r["status"] for r in await Payment.select(Payment.status)] == ["failed"]
    # Every purchase fails until the shop's keys or settings are fixed: the admins are alerted.
    assert [extra["alert"] for extra in alerts] == ["payment"]
    kassa.secret_key = services.settings.yookassa_secret_key.get_secret_value()  # type: ignore[union-attr]
    checkout = await services.billing.start_payment(USER_ID, "month")
    assert checkout.payment_id in kassa.payments


async def test_receipts_need_an_email_and_carry_one_service_item(db_url: str, tg: FakeTelegram) -> None:
    async with FakeYooKassa(require_receipt=True) as kassa:
        settings = billing_settings(db_url, kassa, tg, receipt_enabled=True, receipt_tax_system_code=2)
        async with build_services(settings, migrate=True) as services:
            await add_user(services, tg)
            with pytest.raises(EmailRequired):
                await services.billing.start_payment(USER_ID, "year")
            assert kassa.created_requests == []
            await services.users.set_email(USER_ID, "ann@example.ru")
            checkout = await services.billing.start_payment(USER_ID, "year")
            receipt = kassa.created_requests[-1].json["receipt"]
            assert receipt["customer"] == {"email": "ann@example.ru"}
            assert receipt["tax_system_code"] == 2
            [item] = receipt["items"]
            assert item["payment_subject"] == "service" and item["payment_mode"] == "full_payment"
            assert item["vat_code"] == 1
            assert item["amount"] == {"value": "1999.00", "currency": "RUB"}
            assert Decimal(item["quantity"]) == 1
            assert checkout.payment_id in kassa.payments


async def test_a_payment_made_after_the_person_erased_their_data_is_theirs_again(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    checkout = await services.billing.start_payment(USER_ID, "month")
    dropped = await services.billing.start_payment(USER_ID, "year")
    assert await services.users.delete(USER_ID)
    assert (await payment_row(checkout.payment_id))["telegram_id"] is None

    # The link sent before is paid: premium, the payment linked again, and an account the admin commands find.
    kassa.succeed(checkout.payment_id)
    outcome = await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert outcome is not None and outcome.changed
    assert (await payment_row(checkout.payment_id))["telegram_id"] == USER_ID
    assert (await services.users.get(USER_ID)).premium
    assert [p.payment_id for p in await list_payments(telegram_id=USER_ID)] == [checkout.payment_id]
    # The other one is canceled: nothing that names the person is stored for it.
    kassa.cancel(dropped.payment_id)
    await services.billing.handle_notification("payment.canceled", dropped.payment_id)
    dropped_row = await payment_row(dropped.payment_id)
    assert dropped_row["status"] == "canceled" and dropped_row["raw_object"] is None

    # Erasing again takes it all, the payment's stored copy of YooKassa's object included.
    assert await services.users.delete(USER_ID)
    row = await payment_row(checkout.payment_id)
    assert row["telegram_id"] is None and row["raw_object"] is None
    assert await services.subscriptions.premium_until(USER_ID) is None


async def test_an_erasure_while_a_payment_is_being_verified_leaves_it_one_of_the_two_orders(
    services: Services, kassa: FakeYooKassa
) -> None:
    """The person erases their data while the notification of their payment is being checked with YooKassa: the
    outcome is the one of "paid after the erasure", never a mix (premium, a payment naming them, no account)."""
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    kassa.hang = True
    asked = len(kassa.requests)
    checking = asyncio.create_task(services.billing.handle_notification("payment.succeeded", checkout.payment_id))
    *_, held = await kassa.wait_for_requests(asked + 1)
    assert held.method == "GET" and checkout.payment_id in held.path
    assert await services.users.delete(USER_ID)
    kassa.hang = False
    outcome = await checking
    assert outcome is not None and outcome.changed
    row = await payment_row(checkout.payment_id)
    assert row["telegram_id"] == USER_ID and row["status"] == "succeeded"
    assert (await services.users.get(USER_ID)).premium
    assert [p.payment_id for p in await list_payments(telegram_id=USER_ID)] == [checkout.payment_id]


class Naming:
    """The log records that name the person or are bound to them (an erasure takes the bound ones), from a moment on."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.since = 0

    def sink(self, message: Any) -> None:
        record: Record = message.record
        if str(USER_ID) in record["message"] or telegram_id_of(record) == USER_ID:
            self.records.append(record)

    def from_now(self) -> None:
        self.since = len(self.records)

    def after(self) -> list[str]:
        return [record["message"] for record in self.records[self.since :]]


@pytest.fixture
def naming() -> Iterator[Naming]:
    found = Naming()
    sink = logger.add(found.sink, level="DEBUG")
    try:
        yield found
    finally:
        logger.remove(sink)


async def test_an_erasure_while_a_cancellation_is_checked_keeps_nothing_that_names_the_person(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, naming: Naming
) -> None:
    """The periodic check (or a notification) asks YooKassa about a pending payment, and the person erases their data
    meanwhile: the payment is recorded canceled, without YooKassa's object (its metadata names them), and they are
    neither told of it nor named in the log."""
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.cancel(checkout.payment_id, "insufficient_funds")
    kassa.hang = True
    asked = len(kassa.requests)
    checking = asyncio.create_task(services.billing.sync_payment(checkout.payment_id))
    await kassa.wait_for_requests(asked + 1)
    assert await services.users.delete(USER_ID)
    naming.from_now()
    told = len(tg.sent_texts(USER_ID))
    kassa.hang = False
    outcome = await checking

    assert outcome.changed and outcome.status == "canceled" and outcome.telegram_id is None
    row = await payment_row(checkout.payment_id)
    assert row["status"] == "canceled" and row["telegram_id"] is None and row["raw_object"] is None
    assert tg.sent_texts(USER_ID)[told:] == []
    assert naming.after() == []
    assert not await services.users.exists(USER_ID)


async def test_an_erasure_while_a_payment_is_created_keeps_nothing_that_names_the_person(
    services: Services, kassa: FakeYooKassa, naming: Naming
) -> None:
    """A plan is pressed and the person erases their data while YooKassa makes the payment: its object (whose
    metadata names them) is not stored on the unlinked row, nor are they named in the log. The link is handed out:
    paying it is theirs to do, and links the payment to them again."""
    kassa.hang = True
    pressing = asyncio.create_task(services.billing.start_payment(USER_ID, "month"))
    await until(lambda: bool(kassa.created_requests), what="the payment asked for")
    assert await services.users.delete(USER_ID)
    naming.from_now()
    kassa.hang = False
    checkout = await pressing

    row = await payment_row(checkout.payment_id)
    assert row["status"] == "pending" and row["telegram_id"] is None and row["raw_object"] is None
    assert naming.after() == []
    kassa.succeed(checkout.payment_id)
    assert (await services.billing.sync_payment(checkout.payment_id)).changed
    assert (await payment_row(checkout.payment_id))["telegram_id"] == USER_ID
    assert (await services.users.get(USER_ID)).premium


async def test_an_erasure_while_a_refund_is_made_is_not_undone(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, naming: Naming
) -> None:
    """The person erases their data while YooKassa makes their refund: it is recorded, and they are neither told of
    it nor named in the log, nor is their account made again."""
    payment_id = await paid(services, kassa)
    kassa.hold_answers = True  # the refund is made, its answer on the way
    refunding = asyncio.create_task(services.billing.refunds.refund(payment_id, Decimal("100.00")))
    await until(lambda: bool(kassa.refunds), what="the refund made")
    assert await services.users.delete(USER_ID)
    naming.from_now()
    told = len(tg.sent_texts(USER_ID))
    kassa.hold_answers = False
    outcome = await refunding

    assert outcome.changed and outcome.refunded_total == Decimal("100.00") and outcome.premium_until is None
    row = await payment_row(payment_id)
    assert Decimal(str(row["refunded_amount"])) == Decimal("100.00") and row["telegram_id"] is None
    assert tg.sent_texts(USER_ID)[told:] == []
    assert naming.after() == []
    assert not await services.users.exists(USER_ID)
    await tg.wait_until(lambda: any("Возврат 100 ₽" in t for t in tg.sent_texts(ADMIN_ID)), what="admin notice")


async def test_an_erasure_before_a_refunds_receipt_is_made_out_asks_for_the_receipts_address(
    db_url: str, tg: FakeTelegram, naming: Naming
) -> None:
    """With receipts on, the person erases their data while the refund checks the payment with YooKassa: the stored
    address went with them, so the operator is asked for the receipt's, and their account is not made again to
    look for it."""
    async with FakeYooKassa(require_receipt=True) as kassa:
        settings = billing_settings(db_url, kassa, tg, receipt_enabled=True)
        async with build_services(settings, migrate=True) as services:
            await add_user(services, tg)
            await services.users.set_email(USER_ID, "ann@example.ru")
            payment_id = await paid(services, kassa)
            kassa.hang = True
            asked = len(kassa.requests)
            refunding = asyncio.create_task(services.billing.refunds.refund(payment_id))
            await kassa.wait_for_requests(asked + 1)
            assert await services.users.delete(USER_ID)
            naming.from_now()
            kassa.hang = False
            with pytest.raises(RefundEmailRequired, match="erased their data"):
                await refunding
            assert not await services.users.exists(USER_ID)
            assert kassa.refund_requests == []

            told = len(tg.sent_texts(USER_ID))
            rest = await services.billing.refunds.refund(payment_id, email="ann@example.ru")
            assert rest.changed and rest.refunded_total == Decimal("599.00")
            assert tg.sent_texts(USER_ID)[told:] == [] and naming.after() == []
            assert not await services.users.exists(USER_ID)


async def test_a_refund_has_a_receipt_even_for_a_person_who_erased_their_data(db_url: str, tg: FakeTelegram) -> None:
    async with FakeYooKassa(require_receipt=True) as kassa:
        settings = billing_settings(db_url, kassa, tg, receipt_enabled=True)
        async with build_services(settings, migrate=True) as services:
            await add_user(services, tg)
            await services.users.set_email(USER_ID, "ann@example.ru")
            checkout = await services.billing.start_payment(USER_ID, "month")
            kassa.succeed(checkout.payment_id)
            await services.billing.sync_payment(checkout.payment_id)
            half = await services.billing.refunds.refund(checkout.payment_id, Decimal("299.50"))
            assert half.changed
            assert kassa.refund_requests[-1].json["receipt"]["customer"] == {"email": "ann@example.ru"}

            assert await services.users.delete(USER_ID)
            with pytest.raises(RefundEmailRequired, match="erased their data"):
                await services.billing.refunds.refund(checkout.payment_id)
            with pytest.raises(InvalidEmail):
                await services.billing.refunds.refund(checkout.payment_id, email="not an address")
            assert len(kassa.refund_requests) == 1
            rest = await services.billing.refunds.refund(checkout.payment_id, email=" ann@example.ru ")
            assert rest.changed and rest.refunded_total == Decimal("599.00")
            assert kassa.refund_requests[-1].json["receipt"]["customer"] == {"email": "ann@example.ru"}


# --- applying payments -------------------------------------------------------------------------------------


async def test_a_succeeded_payment_activates_premium_once_and_tells_user_and_admins(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    outcome = await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert outcome is not None and outcome.changed
    assert close_to(outcome.premium_until, utcnow() + timedelta(days=30))
    replay = await services.billing.sync_payment(checkout.payment_id, claimed_status="succeeded")
    assert not replay.changed

    assert await Subscription.count().where(Subscription.telegram_id == USER_ID) == 1
    account = await services.users.get(USER_ID)
    assert account.premium and close_to(account.premium_until, utcnow() + timedelta(days=30))
    assert (await payment_row(checkout.payment_id))["status"] == "succeeded"
    confirmations = [t for t in tg.sent_texts(USER_ID) if "Оплата 599 ₽ получена" in t]
    assert len(confirmations) == 1
    assert "активен до" in confirmations[0]
    assert len([t for t in tg.sent_texts(ADMIN_ID) if checkout.payment_id in t]) == 1


async def test_a_second_purchase_extends_from_the_current_end(services: Services, kassa: FakeYooKassa) -> None:
    for plan in ("month", "year"):
        checkout = await services.billing.start_payment(USER_ID, plan)
        kassa.succeed(checkout.payment_id)
        await services.billing.sync_payment(checkout.payment_id)
    until = await services.subscriptions.premium_until(USER_ID)
    assert close_to(until, utcnow() + timedelta(days=395))


async def test_a_forged_success_for_a_pending_payment_changes_nothing(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    checkout = await services.billing.start_payment(USER_ID, "month")
    with pytest.raises(PaymentNotVerified):
        await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert (await payment_row(checkout.payment_id))["status"] == "pending"
    assert await services.subscriptions.premium_until(USER_ID) is None
    assert any(checkout.payment_id in t and "не подтвердилось" in t for t in tg.sent_texts(ADMIN_ID))


@pytest.mark.parametrize(
    ("field", "value"),
    [("amount", {"value": "1.00", "currency": "RUB"}), ("metadata", {"telegram_id": "1", "plan": "month"})],
)
async def test_a_payment_that_does_not_match_our_row_is_not_activated(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, field: str, value: dict[str, str]
) -> None:
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.payments[checkout.payment_id][field] = value
    kassa.succeed(checkout.payment_id)
    for _ in range(3):
        with pytest.raises(PaymentNotVerified):
            await services.billing.handle_notification("payment.succeeded", checkout.payment_id)
    assert (await payment_row(checkout.payment_id))["status"] == "unverified"
    assert await Subscription.count() == 0
    assert not any("получена" in t for t in tg.sent_texts(USER_ID))
    # YooKassa delivers a refused notification again and again: the admins hear of it once.
    await tg.wait_until(lambda: any("не подтвердилось" in t for t in tg.sent_texts(ADMIN_ID)), what="admin notice")
    assert sum("не подтвердилось" in t for t in tg.sent_texts(ADMIN_ID)) == 1


async def test_amounts_compare_with_the_stored_row_not_todays_price(
    db_url: str, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    async with build_services(billing_settings(db_url, kassa, tg), migrate=True) as services:
        await add_user(services, tg)
        checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    async with build_services(billing_settings(db_url, kassa, tg, price_month_rub=Decimal(699))) as services:
        outcome = await services.billing.sync_payment(checkout.payment_id, claimed_status="succeeded")
    assert outcome.changed


async def test_log_records_that_name_a_payer_are_bound_to_them_so_erasure_takes_them(
    services: Services, kassa: FakeYooKassa
) -> None:
    records: list[Record] = []
    sink = logger.add(lambda message: records.append(message.record), level="DEBUG")
    try:
        checkout = await services.billing.start_payment(USER_ID, "month")
        kassa.succeed(checkout.payment_id)
        await services.billing.sync_payment(checkout.payment_id)
        await services.billing.refunds.refund(checkout.payment_id, Decimal("100.00"))
    finally:
        logger.remove(sink)
    naming = [r for r in records if str(USER_ID) in r["message"]]
    assert len(naming) >= 2  # created, succeeded
    assert all(telegram_id_of(r) == USER_ID for r in naming), [r["message"] for r in naming]
    refunds = [r for r in records if r["message"].startswith(("Refund ", f"Payment {checkout.payment_id} refunded"))]
    assert refunds and all(telegram_id_of(r) == USER_ID for r in refunds)


async def test_a_payment_buys_the_days_it_offered_though_the_plan_changed_since(
    db_url: str, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    async with build_services(billing_settings(db_url, kassa, tg), migrate=True) as services:
        await add_user(services, tg)
        checkout = await services.billing.start_payment(USER_ID, "month")
    assert (await payment_row(checkout.payment_id))["days"] == 30
    assert kassa.payments[checkout.payment_id]["description"] == "Премиум «Помогатора» на 30 дн."
    kassa.succeed(checkout.payment_id)
    async with build_services(billing_settings(db_url, kassa, tg, month_days=31)) as services:
        outcome = await services.billing.sync_payment(checkout.payment_id, claimed_status="succeeded")
    assert outcome.changed
    assert close_to(outcome.premium_until, utcnow() + timedelta(days=30))


async def test_a_payment_from_before_days_were_kept_buys_the_plans_days(
    services: Services, kassa: FakeYooKassa
) -> None:
    checkout = await services.billing.start_payment(USER_ID, "month")
    await Payment.update({Payment.days: None}).where(Payment.yookassa_id == checkout.payment_id)
    kassa.succeed(checkout.payment_id)
    outcome = await services.billing.sync_payment(checkout.payment_id)
    assert close_to(outcome.premium_until, utcnow() + timedelta(days=30))


async def test_a_canceled_payment_is_recorded_and_explained(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.cancel(checkout.payment_id, "insufficient_funds")
    outcome = await services.billing.handle_notification("payment.canceled", checkout.payment_id)
    assert outcome is not None and outcome.changed
    await services.billing.handle_notification("payment.canceled", checkout.payment_id)
    row = await payment_row(checkout.payment_id)
    assert (row["status"], row["cancellation_reason"]) == ("canceled", "insufficient_funds")
    told = [t for t in tg.sent_texts(USER_ID) if "не прошёл" in t]
    assert len(told) == 1 and "недостаточно денег" in told[0]


async def test_a_forged_cancel_of_a_pending_payment_is_not_believed(services: Services, kassa: FakeYooKassa) -> None:
    checkout = await services.billing.start_payment(USER_ID, "month")
    with pytest.raises(PaymentNotVerified):
        await services.billing.handle_notification("payment.canceled", checkout.payment_id)
    assert (await payment_row(checkout.payment_id))["status"] == "pending"


async def test_unknown_payments_and_odd_ids_are_not_found(services: Services, kassa: FakeYooKassa) -> None:
    with pytest.raises(PaymentNotFound):
        await services.billing.handle_notification("payment.succeeded", "2f0e6ff9-000f-5000-8000-1a2b3c4d5e6f")
    with pytest.raises(PaymentNotFound):
        await services.billing.handle_notification("refund.succeeded", "../me")
    assert kassa.requests == []
    assert await services.billing.handle_notification("payout.succeeded", "x") is None


# --- refunds -----------------------------------------------------------------------------------------------


async def paid(services: Services, kassa: FakeYooKassa, plan: str = "month") -> str:
    checkout = await services.billing.start_payment(USER_ID, plan)
    kassa.succeed(checkout.payment_id)
    await services.billing.sync_payment(checkout.payment_id)
    return checkout.payment_id


async def test_refunds_shorten_premium_by_the_refunded_share(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    payment_id = await paid(services, kassa)
    half = await services.billing.refunds.refund(payment_id, Decimal("299.50"))
    assert half.changed and half.amount == Decimal("299.50") and half.refunded_total == Decimal("299.50")
    assert close_to(await services.subscriptions.premium_until(USER_ID), utcnow() + timedelta(days=15))
    assert len(kassa.refund_requests) == 1

    # The refund's own notification arrives later: already recorded, nothing more happens.
    assert half.refund_id is not None
    replay = await services.billing.handle_notification("refund.succeeded", half.refund_id)
    assert replay is not None and not replay.changed

    rest = await services.billing.refunds.refund(payment_id)
    assert rest.amount == Decimal("299.50") and rest.refunded_total == Decimal("599.00")
    assert await services.subscriptions.premium_until(USER_ID) is None
    assert (await payment_row(payment_id))["status"] == "succeeded"
    assert len([t for t in tg.sent_texts(USER_ID) if "возврат" in t.lower()]) == 2


async def test_a_refund_made_in_the_dashboard_is_recorded_once_from_its_notification(
    services: Services, kassa: FakeYooKassa
) -> None:
    payment_id = await paid(services, kassa, "year")
    Configuration.configure(kassa.shop_id, kassa.secret_key, api_url=kassa.api_url)
    refund = await asyncio.to_thread(
        SdkRefund.create, {"payment_id": payment_id, "amount": {"value": "1999.00", "currency": "RUB"}}, "r-1"
    )
    results = await asyncio.gather(
        *(services.billing.handle_notification("refund.succeeded", refund.id) for _ in range(5))
    )
    assert sum(1 for r in results if r is not None and r.changed) == 1
    row = await payment_row(payment_id)
    assert Decimal(str(row["refunded_amount"])) == Decimal(1999)
    assert await services.subscriptions.premium_until(USER_ID) is None


async def test_a_refund_whose_notification_was_lost_is_recorded_by_a_check_or_a_refund(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    # Made in the dashboard, and its notification never came: `payments check` records it...
    payment_id = await paid(services, kassa, "year")
    Configuration.configure(kassa.shop_id, kassa.secret_key, api_url=kassa.api_url)
    await asyncio.to_thread(
        SdkRefund.create, {"payment_id": payment_id, "amount": {"value": "1999.00", "currency": "RUB"}}, "r-lost"
    )
    checked = await services.billing.sync_payment(payment_id)
    assert checked.changed
    assert Decimal(str((await payment_row(payment_id))["refunded_amount"])) == Decimal(1999)
    assert await services.subscriptions.premium_until(USER_ID) is None
    assert any("возврат" in text.lower() for text in tg.sent_texts(USER_ID))
    assert not (await services.billing.sync_payment(payment_id)).changed

    # ...and so does a refund asked for after it, before saying there is nothing left to refund.
    other = await paid(services, kassa, "month")
    await asyncio.to_thread(
        SdkRefund.create, {"payment_id": other, "amount": {"value": "599.00", "currency": "RUB"}}, "r-lost-2"
    )
    with pytest.raises(BillingError, match="already fully refunded"):
        await services.billing.refunds.refund(other)
    assert Decimal(str((await payment_row(other))["refunded_amount"])) == Decimal(599)


async def test_refund_rejects_unpaid_payments_and_bad_amounts(services: Services, kassa: FakeYooKassa) -> None:
    checkout = await services.billing.start_payment(USER_ID, "month")
    with pytest.raises(Exception, match="only succeeded"):
        await services.billing.refunds.refund(checkout.payment_id)
    kassa.succeed(checkout.payment_id)
    with pytest.raises(Exception, match="between"):
        await services.billing.refunds.refund(checkout.payment_id, Decimal(600))
    # Rounding would refund another sum than the one asked for (100.555 went out as 100.56), whoever asks.
    for amount, problem in (("100.555", "more than 2 decimal places"), ("0", "more than zero"), ("1e999", "too large")):
        with pytest.raises(BillingError, match=problem):
            await services.billing.refunds.refund(checkout.payment_id, Decimal(amount))
    assert kassa.refund_requests == []


async def lost_refund(services: Services, kassa: FakeYooKassa, payment_id: str, amount: str) -> None:
    """Ask for a refund that YooKassa makes and whose answer is lost on the way back."""
    kassa.hold_answers = True
    with pytest.raises(PaymentProviderUnavailable):
        await services.billing.refunds.refund(payment_id, Decimal(amount))
    kassa.hold_answers = False
    assert len(kassa.refunds) == 1


@pytest.fixture
async def lost(db_url: str, kassa: FakeYooKassa, tg: FakeTelegram) -> AsyncIterator[tuple[Services, str]]:
    """Services that wait 1.5 s for YooKassa, and a paid payment whose refund of 100.00 was made, its answer lost."""
    async with build_services(billing_settings(db_url, kassa, tg, yookassa_timeout=1.5), migrate=True) as built:
        await add_user(built, tg)
        payment_id = await paid(built, kassa)
        await lost_refund(built, kassa, payment_id, "100.00")
        yield built, payment_id


async def test_a_refund_whose_answer_was_lost_is_made_once_when_asked_again(
    lost: tuple[Services, str], kassa: FakeYooKassa
) -> None:
    services, payment_id = lost

    again = await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    assert again.changed and again.refunded_total == Decimal("100.00")
    assert len(kassa.refunds) == 1
    keys = {r.idempotence_key for r in kassa.refund_requests}
    assert len(kassa.refund_requests) == 2 and len(keys) == 1
    row = await payment_row(payment_id)
    assert Decimal(str(row["refunded_amount"])) == Decimal("100.00") and row["refund_key"] is None

    # Answered now: another refund of the same amount is a new one.
    await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    assert len(kassa.refunds) == 2
    assert Decimal(str((await payment_row(payment_id))["refunded_amount"])) == Decimal("200.00")


async def test_a_lost_refund_recorded_from_its_notification_is_not_made_again(
    lost: tuple[Services, str], kassa: FakeYooKassa
) -> None:
    services, payment_id = lost
    [refund_id] = kassa.refunds
    recorded = await services.billing.handle_notification("refund.succeeded", refund_id)
    assert recorded is not None and recorded.changed

    # The operator, told the refund may have been made, runs the command again, in full by default.
    again = await services.billing.refunds.refund(payment_id)
    assert not again.changed and again.refund_id == refund_id
    assert len(kassa.refunds) == 1
    assert Decimal(str((await payment_row(payment_id))["refunded_amount"])) == Decimal("100.00")


async def test_another_amount_waits_until_the_lost_refund_is_asked_again(
    lost: tuple[Services, str], kassa: FakeYooKassa
) -> None:
    services, payment_id = lost
    with pytest.raises(
        BillingError, match=r"100\.00 RUB .* was not recorded \(YooKassa's answer was lost.* and may have been made"
    ):
        await services.billing.refunds.refund(payment_id, Decimal("50.00"))
    assert len(kassa.refund_requests) == 1

    # Past the day YooKassa keeps keys, the refunded total tells what was made.
    await Payment.update({Payment.refund_key_at: utcnow() - timedelta(hours=25)}).where(
        Payment.yookassa_id == payment_id
    )
    rest = await services.billing.refunds.refund(payment_id)
    assert kassa.refund_requests[-1].json["amount"]["value"] == "499.00"
    assert rest.refunded_total == Decimal("599.00") and len(kassa.refunds) == 2


class Stopped(Exception):
    """The process stopping (killed, Ctrl-C, the database gone) at some step."""


@pytest.mark.parametrize("step", ["answered", "answered pending", "payment fetched", "recorded"])
async def test_a_refund_made_but_not_recorded_is_finished_when_asked_again_not_made_twice(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """YooKassa made a partial refund and answered, then the process failed before the refund was recorded (or
    stored to be waited for). Run again as the operator is told to, the command asks with the same key: YooKassa
    answers with the same refund, which is recorded once, and no second refund is made."""
    payment_id = await paid(services, kassa)
    kassa.refund_status = "pending" if step == "answered pending" else "succeeded"
    failures: list[str] = []

    def stop_once(what: str) -> None:
        if what not in failures:
            failures.append(what)
            raise Stopped(what)

    def on_log(message: Any) -> None:
        if step.startswith("answered") and message.record["message"].startswith("Refund "):
            stop_once(step)  # right after YooKassa answered

    fetch = services.billing.kassa.get_payment

    async def get_payment(asked: str) -> Any:
        if step == "payment fetched" and kassa.refunds:
            stop_once(step)
        return await fetch(asked)

    shorten = services.subscriptions.shorten

    async def shortening(asked: str, share: float) -> Any:
        if step == "recorded":
            stop_once(step)  # inside the transaction that records the refund
        return await shorten(asked, share)

    monkeypatch.setattr(services.billing.kassa, "get_payment", get_payment)
    monkeypatch.setattr(services.subscriptions, "shorten", shortening)
    sink = logger.add(on_log, level="INFO", catch=False)
    try:
        with pytest.raises(Stopped):
            await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    finally:
        logger.remove(sink)
    assert failures == [step] and len(kassa.refunds) == 1

    again = await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    assert len(kassa.refunds) == 1 and again.refund_id in kassa.refunds
    assert len(kassa.refund_requests) == 2 and len({r.idempotence_key for r in kassa.refund_requests}) == 1
    row = await payment_row(payment_id)
    assert row["refund_key"] is None
    if step == "answered pending":
        assert again.status == "pending" and row["refund_waiting_id"] == again.refund_id
        assert again.refund_id is not None
        kassa.settle_refund(again.refund_id)
        assert await services.billing.check_waiting(await waiting_payments()) == 1
    else:
        assert again.changed and again.amount == Decimal("100.00")
    assert Decimal(str((await payment_row(payment_id))["refunded_amount"])) == Decimal("100.00")
    assert kassa.payments[payment_id]["refunded_amount"]["value"] == "100.00"
    assert close_to(await services.subscriptions.premium_until(USER_ID), utcnow() + timedelta(days=30) * 499 / 599)
    assert len([t for t in tg.sent_texts(USER_ID) if "возврат" in t.lower()]) == 1

    # Recorded now: asked for again, it is another refund.
    kassa.refund_status = "succeeded"
    await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    assert len(kassa.refunds) == 2 and kassa.payments[payment_id]["refunded_amount"]["value"] == "200.00"


@pytest.fixture
def runs_meet_before_storing_their_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first two refund runs have both read the payment's row (no refund asked for yet) before either stores the
    key it would ask YooKassa with."""
    both_read = asyncio.Barrier(2)
    met = 0
    receipt = RefundService._receipt

    async def after_both_read(self: RefundService, row: Any, email: str | None) -> Any:
        nonlocal met
        met += 1
        if met <= 2:
            await asyncio.wait_for(both_read.wait(), 10)
        return await receipt(self, row, email)

    monkeypatch.setattr(RefundService, "_receipt", after_both_read)


async def at_once(kassa: FakeYooKassa, *runs: Coroutine[Any, Any, RefundOutcome]) -> list[Any]:
    """Refund runs at once: what each returned or raised. The refund asked for first is answered only once another
    run has finished, so that run finds it asked for and not yet recorded."""
    kassa.hold_answers = True
    tasks = [asyncio.create_task(run) for run in runs]
    try:
        await asyncio.wait(tasks, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    finally:
        kassa.hold_answers = False
    return await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.usefixtures("runs_meet_before_storing_their_keys")
async def test_two_refunds_of_one_amount_asked_at_once_are_one_refund(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    payment_id = await paid(services, kassa)
    refunds = services.billing.refunds
    first, second = await at_once(
        kassa, refunds.refund(payment_id, Decimal("100.00")), refunds.refund(payment_id, Decimal("100.00"))
    )
    assert isinstance(first, RefundOutcome) and isinstance(second, RefundOutcome), (first, second)
    assert first.refund_id == second.refund_id and sorted([first.changed, second.changed]) == [False, True]
    assert len(kassa.refunds) == 1 and len({r.idempotence_key for r in kassa.refund_requests}) == 1
    row = await payment_row(payment_id)
    assert Decimal(str(row["refunded_amount"])) == Decimal(100) and row["refund_key"] is None
    assert len([t for t in tg.sent_texts(USER_ID) if "возврат" in t.lower()]) == 1


@pytest.mark.usefixtures("runs_meet_before_storing_their_keys")
async def test_a_refund_of_another_amount_asked_while_one_is_asked_is_refused(
    services: Services, kassa: FakeYooKassa
) -> None:
    payment_id = await paid(services, kassa)
    refunds = services.billing.refunds
    results = await at_once(
        kassa, refunds.refund(payment_id, Decimal("100.00")), refunds.refund(payment_id, Decimal("50.00"))
    )
    [made] = [r for r in results if isinstance(r, RefundOutcome)]
    [refused] = [r for r in results if isinstance(r, BaseException)]
    assert made.changed and len(kassa.refunds) == 1
    assert isinstance(refused, BillingError)
    assert "another run is asking for it right now" in str(refused)
    assert f"Ask for {made.amount} again to finish it" in str(refused)


async def test_a_refund_asked_while_another_was_answered_is_refused_not_made_again(
    services: Services, kassa: FakeYooKassa, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other run stored its key, was answered and recorded its refund (forgetting the key) between this run's
    look at the payment and its storing its own key: what this run asks for may be what the other made."""
    payment_id = await paid(services, kassa)
    receipt = RefundService._receipt
    other: list[RefundOutcome] = []
    calls = 0

    async def another_run_meanwhile(self: RefundService, row: Any, email: str | None) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            other.append(await services.billing.refunds.refund(payment_id, Decimal("100.00")))
        return await receipt(self, row, email)

    monkeypatch.setattr(RefundService, "_receipt", another_run_meanwhile)
    with pytest.raises(BillingError, match=r"Another run asked for a refund .*\(refunded in total now: 100\.00 RUB\)"):
        await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    assert len(kassa.refunds) == 1 and other[0].changed


async def test_a_refused_refund_forgets_its_key(services: Services, kassa: FakeYooKassa) -> None:
    payment_id = await paid(services, kassa)
    # Asked and lost before it reached YooKassa; since then 550 was refunded in YooKassa's dashboard.
    await Payment.update(
        {Payment.refund_key: "never-arrived", Payment.refund_key_amount: Decimal(100), Payment.refund_key_at: utcnow()}
    ).where(Payment.yookassa_id == payment_id)
    Configuration.configure(kassa.shop_id, kassa.secret_key, api_url=kassa.api_url)
    await asyncio.to_thread(
        SdkRefund.create, {"payment_id": payment_id, "amount": {"value": "550.00", "currency": "RUB"}}, "r-1"
    )
    with pytest.raises(PaymentRejected):
        await services.billing.refunds.refund(payment_id, Decimal("100.00"))
    assert kassa.refund_requests[-1].idempotence_key == "never-arrived"
    assert (await payment_row(payment_id))["refund_key"] is None  # refused: nothing was made
    rest = await services.billing.refunds.refund(payment_id)
    assert kassa.refund_requests[-1].json["amount"]["value"] == "49.00"
    assert rest.refunded_total == Decimal("599.00")


async def test_a_payment_yookassa_does_not_know_does_not_hold_up_the_check(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    unknown = await services.billing.start_payment(USER_ID, "year")  # made with another shop's keys, say
    lost = await services.billing.start_payment(USER_ID, "month")
    await Payment.update({Payment.created_at: utcnow() - timedelta(minutes=11)}, force=True)
    del kassa.payments[unknown.payment_id]
    kassa.succeed(lost.payment_id)

    assert set(await waiting_payments()) == {unknown.payment_id, lost.payment_id}
    assert await services.billing.check_waiting([unknown.payment_id, lost.payment_id]) == 1
    assert (await payment_row(lost.payment_id))["status"] == "succeeded"
    assert (await payment_row(unknown.payment_id))["status"] == "failed"
    assert await waiting_payments() == []
    [told] = [t for t in tg.sent_texts(ADMIN_ID) if "не знает платёж" in t]
    assert unknown.payment_id in told


# --- listing -----------------------------------------------------------------------------------------------


async def test_list_payments_filters_by_user_and_status(services: Services, kassa: FakeYooKassa) -> None:
    payment_id = await paid(services, kassa)
    await services.billing.start_payment(USER_ID, "year")
    everything = await list_payments()
    assert {p.status for p in everything} == {"succeeded", "pending"}
    [done] = await list_payments(telegram_id=USER_ID, status="succeeded")
    assert done.payment_id == payment_id and done.amount == Decimal(599)
    assert await list_payments(telegram_id=1) == []


# --- reminders ---------------------------------------------------------------------------------------------


async def test_a_reminder_goes_out_once_even_when_runs_race(services: Services, tg: FakeTelegram) -> None:
    async with services.database.transaction():
        await services.subscriptions.grant(USER_ID, 2, plan="manual")
    tg.add_chat(5)
    async with services.database.transaction():
        await services.subscriptions.grant(5, 10, plan="manual")  # ends later than three days: not yet
    assert services.reminders is not None
    counts = await asyncio.gather(*(services.reminders.send_due() for _ in range(4)))
    assert sum(counts) == 1
    assert await services.reminders.send_due() == 0
    reminders = [t for t in tg.sent_texts(USER_ID) if "Премиум закончится" in t]
    assert len(reminders) == 1
    assert tg.sent_texts(5) == []
    rows = await Subscription.select(Subscription.reminded_at).where(Subscription.telegram_id == USER_ID)
    assert rows[0]["reminded_at"] is not None


async def test_no_reminder_when_a_renewal_follows(services: Services, tg: FakeTelegram) -> None:
    async with services.database.transaction():
        await services.subscriptions.grant(USER_ID, 2, plan="manual")
        await services.subscriptions.grant(USER_ID, 30, plan="manual")
    assert services.reminders is not None
    assert await services.reminders.send_due() == 0
    # Three days before the renewal ends, it is that subscription's turn.
    assert await services.reminders.send_due(now=utcnow() + timedelta(days=30)) == 1
    assert len(tg.sent_texts(USER_ID)) == 1


# --- boundaries --------------------------------------------------------------------------------------------


async def test_the_sdk_gets_no_logger_and_errors_carry_no_secret(kassa: FakeYooKassa) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG")
    try:
        client = YooKassaClient(YooKassaConfig(kassa.shop_id, "wrong-secret", kassa.api_url, timeout=2))
        assert Configuration.logger is None
        with pytest.raises(PaymentRejected) as rejected:
            await client.get_payment("2f0e6ff9-000f-5000-8000-1a2b3c4d5e6f")
        assert "invalid_credentials" in rejected.value.user_message
        kassa.down = True
        with pytest.raises(PaymentProviderUnavailable):
            await client.get_payment("2f0e6ff9-000f-5000-8000-1a2b3c4d5e6f")
    finally:
        logger.remove(sink)
    assert "wrong-secret" not in "".join(lines) + rejected.value.user_message
    assert "Basic " not in "".join(lines)


async def test_unreachable_api_is_unavailable_not_a_crash() -> None:
    client = YooKassaClient(YooKassaConfig("1", "s", "http://127.0.0.1:9/v3", timeout=1))
    with pytest.raises(PaymentProviderUnavailable, match="did not answer"):
        await client.get_payment("2f0e6ff9-000f-5000-8000-1a2b3c4d5e6f")
