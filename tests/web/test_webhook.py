"""The YooKassa webhook and the health check over real HTTP (uvicorn in the test loop), with the fakes."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import httpx

from pomogator.store.tables import Payment, Subscription
from pomogator.timeutil import as_utc, utcnow
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.yookassa_server import FakeYooKassa
from tests.web.conftest import AppFactory
from tests.web.support import ADMIN_ID, USER_ID, WEBHOOK


async def post(url: str, body: object, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(url + WEBHOOK, json=body, **kwargs)  # type: ignore[arg-type]


async def status_of(payment_id: str) -> str:
    row = await Payment.select(Payment.status).where(Payment.yookassa_id == payment_id).first()
    assert row is not None
    return str(row["status"])


async def test_healthz_answers_when_the_database_does(web_app: AppFactory) -> None:
    async with web_app() as (url, _), httpx.AsyncClient() as client:
        response = await client.get(url + "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_a_verified_notification_activates_premium_and_tells_the_user(
    web_app: AppFactory, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    async with web_app() as (url, services):
        checkout = await services.billing.start_payment(USER_ID, "month")
        kassa.succeed(checkout.payment_id)
        response = await post(url, kassa.notification("payment.succeeded", checkout.payment_id))
        assert response.status_code == 200
        message = await tg.wait_for_message(USER_ID, lambda m: "получена" in (m.text or ""), after_message_id=0)
        until = await services.subscriptions.premium_until(USER_ID)
    assert until is not None and abs(until - (utcnow() + timedelta(days=30))) < timedelta(minutes=1)
    assert until.astimezone(services.settings.tz).strftime("%d.%m.%Y") in (message.text or "")
    assert await status_of(checkout.payment_id) == "succeeded"
    assert any(checkout.payment_id in t for t in tg.sent_texts(ADMIN_ID))


async def test_fifty_concurrent_replays_extend_premium_once(
    web_app: AppFactory, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    async with web_app() as (url, services):
        checkout = await services.billing.start_payment(USER_ID, "year")
        kassa.succeed(checkout.payment_id)
        body = kassa.notification("payment.succeeded", checkout.payment_id)
        async with httpx.AsyncClient(timeout=60) as client:
            responses = await asyncio.gather(*(client.post(url + WEBHOOK, json=body) for _ in range(50)))
        assert [r.status_code for r in responses] == [200] * 50
        rows = await Subscription.select().where(Subscription.telegram_id == USER_ID)
        assert len(rows) == 1
        assert abs(as_utc(rows[0]["ends_at"]) - (utcnow() + timedelta(days=365))) < timedelta(minutes=1)
        await tg.wait_for_message(USER_ID, lambda m: "получена" in (m.text or ""), after_message_id=0)
        await asyncio.sleep(0.2)
        assert len([t for t in tg.sent_texts(USER_ID) if "получена" in t]) == 1
        assert len(tg.sent_texts(ADMIN_ID)) == 1


async def test_a_forged_notification_for_a_pending_payment_is_refused(
    web_app: AppFactory, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    async with web_app() as (url, services):
        checkout = await services.billing.start_payment(USER_ID, "month")
        forged = kassa.notification("payment.succeeded", checkout.payment_id)
        forged["object"]["status"] = "succeeded"
        forged["object"]["paid"] = True
        response = await post(url, forged)
        assert response.status_code == 400
        assert await services.subscriptions.premium_until(USER_ID) is None
    assert await status_of(checkout.payment_id) == "pending"
    assert tg.sent_texts(USER_ID) == []
    assert any("не подтвердилось" in t for t in tg.sent_texts(ADMIN_ID))


async def test_an_amount_that_does_not_match_is_not_activated(
    web_app: AppFactory, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    async with web_app() as (url, services):
        checkout = await services.billing.start_payment(USER_ID, "month")
        kassa.payments[checkout.payment_id]["amount"]["value"] = "5.99"
        kassa.succeed(checkout.payment_id)
        response = await post(url, kassa.notification("payment.succeeded", checkout.payment_id))
        assert response.status_code == 400
        assert await services.subscriptions.premium_until(USER_ID) is None
    assert await status_of(checkout.payment_id) == "unverified"
    assert any("5.99" in t for t in tg.sent_texts(ADMIN_ID))


async def test_an_untrusted_sender_is_refused_before_anything_is_fetched(
    web_app: AppFactory, kassa: FakeYooKassa
) -> None:
    async with web_app(yookassa_trusted_networks="185.71.76.0/27") as (url, services):
        checkout = await services.billing.start_payment(USER_ID, "month")
        kassa.succeed(checkout.payment_id)
        before = len(kassa.requests)
        body = kassa.notification("payment.succeeded", checkout.payment_id)
        refused = await post(url, body)
        # Without trusted proxies a forwarded address is just a header anyone can send.
        spoofed = await post(url, body, headers={"X-Forwarded-For": "185.71.76.1"})
        assert (refused.status_code, spoofed.status_code) == (403, 403)
        assert len(kassa.requests) == before
        assert await services.subscriptions.premium_until(USER_ID) is None


async def test_forwarded_addresses_count_only_from_trusted_proxies(web_app: AppFactory, kassa: FakeYooKassa) -> None:
    async with web_app(yookassa_trusted_networks="185.71.76.0/27", web_trusted_proxies="127.0.0.1") as (url, services):
        checkout = await services.billing.start_payment(USER_ID, "month")
        kassa.succeed(checkout.payment_id)
        body = kassa.notification("payment.succeeded", checkout.payment_id)
        outside = await post(url, body, headers={"X-Forwarded-For": "185.71.76.1, 203.0.113.9"})
        assert outside.status_code == 403
        accepted = await post(url, body, headers={"X-Forwarded-For": "203.0.113.9, 185.71.76.1"})
        assert accepted.status_code == 200
        assert await services.subscriptions.premium_until(USER_ID) is not None


async def test_unknown_payments_are_acknowledged_and_bad_bodies_refused(web_app: AppFactory) -> None:
    unknown = {
        "type": "notification",
        "event": "payment.succeeded",
        "object": {"id": "2f0e6ff9-000f-5000-8000-1a2b3c4d5e6f", "status": "succeeded"},
    }
    async with web_app() as (url, _), httpx.AsyncClient() as client:
        assert (await client.post(url + WEBHOOK, json=unknown)).status_code == 200
        assert (await client.post(url + WEBHOOK, content=b"{not json")).status_code == 400
        assert (await client.post(url + WEBHOOK, json={"type": "notification"})).status_code == 400
        assert (await client.post(url + WEBHOOK, json=[1, 2])).status_code == 400
        # Nesting deeper than the JSON parser recurses: refused like any other body that is not a notification.
        deep = b'{"type": "notification", "object": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        assert (await client.post(url + WEBHOOK, content=deep)).status_code == 400
        too_big = b'{"type": "notification", "pad": "' + b"x" * 300_000 + b'"}'
        assert (await client.post(url + WEBHOOK, content=too_big)).status_code == 413
        assert (await client.get(url + WEBHOOK)).status_code == 405


async def test_ids_of_another_form_and_refunds_of_unknown_payments_are_never_asked_about(
    web_app: AppFactory, kassa: FakeYooKassa
) -> None:
    payment = "2f0e6ff9-000f-5000-8000-1a2b3c4d5e6f"
    refund = {"id": "2f0e7000-0015-5000-9000-1a2b3c4d5e6f", "payment_id": payment, "status": "succeeded"}
    async with web_app() as (url, _), httpx.AsyncClient() as client:
        asked = len(kassa.requests)
        for object_id in (payment + "\n", "../v3/payments", "id with spaces"):
            body = {"type": "notification", "event": "payment.succeeded", "object": {"id": object_id}}
            assert (await client.post(url + WEBHOOK, json=body)).status_code == 400
        forged = {**refund, "payment_id": payment + "\n"}
        body = {"type": "notification", "event": "refund.succeeded", "object": forged}
        assert (await client.post(url + WEBHOOK, json=body)).status_code == 400
        # A refund of a payment that is not ours: acknowledged, and YooKassa is not asked about it.
        body = {"type": "notification", "event": "refund.succeeded", "object": refund}
        assert (await client.post(url + WEBHOOK, json=body)).status_code == 200
        assert len(kassa.requests) == asked


async def test_the_api_down_during_a_notification_means_retry_later(
    web_app: AppFactory, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    async with web_app() as (url, services):
        checkout = await services.billing.start_payment(USER_ID, "month")
        kassa.succeed(checkout.payment_id)
        body = kassa.notification("payment.succeeded", checkout.payment_id)
        kassa.down = True
        assert (await post(url, body)).status_code == 503
        assert await status_of(checkout.payment_id) == "pending"
        kassa.down = False
        assert (await post(url, body)).status_code == 200
        assert await services.subscriptions.premium_until(USER_ID) is not None


async def test_cancellation_and_refund_notifications(
    web_app: AppFactory, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    async with web_app() as (url, services):
        declined = await services.billing.start_payment(USER_ID, "year")
        kassa.cancel(declined.payment_id, "card_expired")
        assert (await post(url, kassa.notification("payment.canceled", declined.payment_id))).status_code == 200
        assert await status_of(declined.payment_id) == "canceled"
        assert any("истёк срок действия" in t for t in tg.sent_texts(USER_ID))

        paid = await services.billing.start_payment(USER_ID, "month")
        kassa.succeed(paid.payment_id)
        assert (await post(url, kassa.notification("payment.succeeded", paid.payment_id))).status_code == 200
        refund = await services.billing.kassa.create_refund(
            payment_id=paid.payment_id,
            amount=Decimal(599),
            currency="RUB",
            idempotence_key="dashboard-refund",
            description="refund",
        )
        body = kassa.notification("refund.succeeded", refund.id)
        assert [(await post(url, body)).status_code for _ in range(3)] == [200] * 3
        assert await services.subscriptions.premium_until(USER_ID) is None
        assert len([t for t in tg.sent_texts(USER_ID) if "возврат" in t.lower()]) == 1


async def test_the_app_sends_due_reminders_in_the_background(web_app: AppFactory, tg: FakeTelegram) -> None:
    async with web_app(reminder_interval_seconds=0.05) as (_, services):
        async with services.database.transaction():
            await services.subscriptions.grant(USER_ID, 1, plan="manual")
        message = await tg.wait_for_message(USER_ID, lambda m: "закончится" in (m.text or ""), after_message_id=0)
        await asyncio.sleep(0.3)
    assert "/billing" in (message.text or "")
    assert len(tg.sent_texts(USER_ID)) == 1


async def test_the_app_settles_payments_whose_notification_never_came(
    web_app: AppFactory, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    async with web_app() as (_, services):
        lost = await services.billing.start_payment(USER_ID, "month")
        young = await services.billing.start_payment(USER_ID, "year")
        await Payment.update({Payment.created_at: utcnow() - timedelta(minutes=11)}).where(
            Payment.yookassa_id == lost.payment_id
        )
        kassa.succeed(lost.payment_id)
        kassa.succeed(young.payment_id)
    asked_before = len(kassa.requests)
    # No notification is sent: the background check finds the older payment paid.
    async with web_app(payment_check_interval_seconds=0.05) as (_, services):
        await tg.wait_for_message(USER_ID, lambda m: "Оплата 599 ₽ получена" in (m.text or ""), after_message_id=0)
        await asyncio.sleep(0.3)
        assert await status_of(lost.payment_id) == "succeeded"
        # One being paid right now is left to its notification.
        assert await status_of(young.payment_id) == "pending"
        assert [r.path for r in kassa.requests[asked_before:]] == [f"/v3/payments/{lost.payment_id}"]
    assert len([t for t in tg.sent_texts(USER_ID) if "получена" in t]) == 1


async def test_a_failed_confirmation_message_does_not_undo_the_activation(
    web_app: AppFactory, kassa: FakeYooKassa, tg: FakeTelegram
) -> None:
    async with web_app() as (url, services):
        checkout = await services.billing.start_payment(USER_ID, "month")
        kassa.succeed(checkout.payment_id)
        tg.block_user(USER_ID)
        response = await post(url, kassa.notification("payment.succeeded", checkout.payment_id))
        assert response.status_code == 200
        assert await services.subscriptions.premium_until(USER_ID) is not None
        assert await status_of(checkout.payment_id) == "succeeded"
        assert tg.sent_texts(USER_ID) == []
