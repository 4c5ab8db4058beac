"""The receipt e-mail: what is taken as an address, and a payment YooKassa refuses because of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from loguru import logger

from pomogator.billing.models import ReceiptSpec
from pomogator.billing.yookassa import YooKassaClient, YooKassaConfig
from pomogator.container import Services, build_services
from pomogator.errors import BillingError, InvalidEmail, PaymentProviderUnavailable
from pomogator.services.users import checked_email
from pomogator.store.tables import Payment
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.yookassa_server import FakeYooKassa
from tests.web.support import USER_ID, add_user, billing_settings

REFUSED = "ann@example.ru"


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("ivan@mail.ru", "ivan@mail.ru"),
        ("  ivan@mail.ru ", "ivan@mail.ru"),
        ("ivan@mail.ru.", "ivan@mail.ru"),  # the end of a sentence
        ("ivan@mail.ru,", "ivan@mail.ru"),
        ("<ivan@mail.ru>", "ivan@mail.ru"),
        ("Иван Петров <ivan@mail.ru>", "ivan@mail.ru"),
        ("«ivan@mail.ru»", "ivan@mail.ru"),
        ("mailto:ivan@mail.ru", "ivan@mail.ru"),
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
        ("vasya@почта.рф", "vasya@почта.рф"),
        ("vasya@xn--80a1acny.xn--p1ai", "vasya@xn--80a1acny.xn--p1ai"),
    ],
)
def test_an_address_is_taken_without_what_was_typed_around_it(typed: str, stored: str) -> None:
    assert checked_email(typed) == stored


@pytest.mark.parametrize(
    "typed",
    [
        "ivan@mail..ru",
        "ivan@.mail.ru",
        "ivan@mail.r",
        "ivan@mail",
        "ivan.@mail.ru",
        ".ivan@mail.ru",
        "iv..an@mail.ru",
        "ivan@-mail.ru",
        "ivan@mail_ru.ru",
        "ivan@mail.ru@mail.ru",
        "ivan ivanov@mail.ru",
        "ivan@mail.123",
        "not an address",
        "a@" + "b" * 250 + ".ru",
    ],
)
def test_a_broken_address_is_refused(typed: str) -> None:
    with pytest.raises(InvalidEmail):
        checked_email(typed)


@pytest.fixture
async def receipts(db_url: str, tg: FakeTelegram) -> AsyncIterator[tuple[Services, FakeYooKassa]]:
    async with FakeYooKassa(require_receipt=True) as kassa:
        kassa.refused_emails.add(REFUSED)
        settings = billing_settings(db_url, kassa, tg, receipt_enabled=True)
        async with build_services(settings, migrate=True) as services:
            await add_user(services, tg)
            yield services, kassa


async def test_a_payment_refused_for_the_receipts_address_asks_for_it_and_alerts_no_admin(
    receipts: tuple[Services, FakeYooKassa],
) -> None:
    services, kassa = receipts
    await services.users.set_email(USER_ID, REFUSED)
    alerts: list[dict[str, Any]] = []
    sink = logger.add(lambda m: alerts.append(m.record["extra"]), filter=lambda r: "alert" in r["extra"])
    try:
        with pytest.raises(InvalidEmail):
            await services.billing.start_payment(USER_ID, "month")
    finally:
        logger.remove(sink)
    assert alerts == []  # the person's typo: nothing for the shop's admins to fix
    [request] = kassa.created_requests
    assert request.status == 400 and request.json["receipt"]["customer"] == {"email": REFUSED}
    assert [r["status"] for r in await Payment.select(Payment.status)] == ["failed"]

    await services.users.set_email(USER_ID, "ann@example.com")
    checkout = await services.billing.start_payment(USER_ID, "month")
    assert kassa.payments[checkout.payment_id]["status"] == "pending"


async def test_a_refund_refused_for_the_receipts_address_forgets_its_key(
    receipts: tuple[Services, FakeYooKassa],
) -> None:
    services, kassa = receipts
    await services.users.set_email(USER_ID, "ann@example.com")
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    await services.billing.sync_payment(checkout.payment_id)
    with pytest.raises(InvalidEmail):
        await services.billing.refunds.refund(checkout.payment_id, Decimal("100.00"), email=REFUSED)
    assert kassa.refunds == {}
    row = await Payment.select(Payment.refund_key).where(Payment.yookassa_id == checkout.payment_id).first()
    assert row is not None and row["refund_key"] is None  # answered: nothing was made, a new refund is a new key
    done = await services.billing.refunds.refund(checkout.payment_id, Decimal("100.00"))
    assert done.changed


async def test_the_wrapper_tells_a_refused_receipt_address_from_a_refused_request(kassa: FakeYooKassa) -> None:
    client = YooKassaClient(YooKassaConfig(kassa.shop_id, kassa.secret_key, kassa.api_url, timeout=2))

    async def create(email: str) -> object:
        return await client.create_payment(
            amount=Decimal(599),
            currency="RUB",
            description="Премиум",
            return_url="https://example.ru",
            metadata={},
            idempotence_key=email,
            receipt=ReceiptSpec(email, "Премиум", 1),
        )

    with pytest.raises(InvalidEmail, match=r"receipt\.customer\.email"):
        await create("ivan@mail.r")  # YooKassa's own check, not ours
    kassa.refused_emails.add("ivan@mail.ru")
    with pytest.raises(InvalidEmail):
        await create("ivan@mail.ru")
    assert await create("ivan@mail.com") is not None


async def test_a_refund_asked_again_with_another_address_keeps_the_first_requests_key(
    db_url: str, tg: FakeTelegram
) -> None:
    """The first request was made at YooKassa and its answer lost. Asked again with another receipt address (by a
    second run while the first waits, or after), YooKassa refuses the key for its other details: the key is kept, so
    the refund is finished once, never made anew with a fresh key."""
    async with FakeYooKassa(require_receipt=True) as kassa:
        settings = billing_settings(db_url, kassa, tg, receipt_enabled=True, yookassa_timeout=1.5)
        async with build_services(settings, migrate=True) as services:
            await add_user(services, tg)
            await services.users.set_email(USER_ID, "ann@example.com")
            checkout = await services.billing.start_payment(USER_ID, "month")
            kassa.succeed(checkout.payment_id)
            await services.billing.sync_payment(checkout.payment_id)
            refund = services.billing.refunds.refund
            kassa.hold_answers = True
            with pytest.raises(PaymentProviderUnavailable):
                await refund(checkout.payment_id, Decimal("100.00"))
            kassa.hold_answers = False

            with pytest.raises(BillingError, match=r"with other details \(the receipt's email\).* after \d{4}-"):
                await refund(checkout.payment_id, Decimal("100.00"), email="bob@example.com")
            row = await Payment.select(Payment.refund_key).where(Payment.yookassa_id == checkout.payment_id).first()
            assert row is not None and row["refund_key"] is not None

            done = await refund(checkout.payment_id, Decimal("100.00"))
            assert done.changed and done.refunded_total == Decimal("100.00")
            assert len(kassa.refunds) == 1
            assert len({request.idempotence_key for request in kassa.refund_requests}) == 1
