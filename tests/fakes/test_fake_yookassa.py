"""The fake YooKassa API, exercised through the real (synchronous) ``yookassa`` SDK in worker threads."""

from __future__ import annotations

import asyncio
import base64
import re
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yookassa import Configuration, Payment, Refund
from yookassa.domain.exceptions import (
    BadRequestError,
    InternalServerError,
    NotFoundError,
    UnauthorizedError,
)
from yookassa.domain.notification import WebhookNotificationFactory

from tests.fakes.yookassa_server import FakeYooKassa

REPO_ROOT = Path(__file__).resolve().parents[2]
ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
async def kassa() -> AsyncIterator[FakeYooKassa]:
    async with FakeYooKassa() as server:
        Configuration.configure(server.shop_id, server.secret_key, api_url=server.api_url)
        yield server


def auth_headers(kassa: FakeYooKassa) -> dict[str, str]:
    token = base64.b64encode(f"{kassa.shop_id}:{kassa.secret_key}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def payment_params(value: str = "599.00", **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "amount": {"value": value, "currency": "RUB"},
        "confirmation": {"type": "redirect", "return_url": "https://t.me/pomogator_bot"},
        "capture": True,
        "description": "Pomogator Pro, 30 days",
        "metadata": {"user_id": 42, "plan": "pro"},
    }
    params.update(extra)
    return params


def receipt(value: str = "599.00", quantity: str = "1") -> dict[str, Any]:
    return {
        "customer": {"email": "user@example.com"},
        "items": [
            {
                "description": "Pomogator Pro subscription",
                "quantity": quantity,
                "amount": {"value": value, "currency": "RUB"},
                "vat_code": 1,
                "payment_mode": "full_payment",
                "payment_subject": "service",
            }
        ],
    }


async def create(params: dict[str, Any], key: str | None = None) -> Any:
    return await asyncio.to_thread(Payment.create, params, key or str(uuid.uuid4()))


async def test_create_payment_returns_pending_payment_and_records_request(kassa: FakeYooKassa) -> None:
    payment = await create(payment_params(receipt=receipt()), "key-1")

    assert ID_RE.match(payment.id)
    assert payment.status == "pending"
    assert payment.paid is False
    assert payment.test is True
    assert payment.refundable is False
    assert (payment.amount.value, payment.amount.currency) == (599, "RUB")
    assert payment.description == "Pomogator Pro, 30 days"
    # The SDK adds cms_name itself; everything else comes back as strings.
    assert payment.metadata == {"user_id": "42", "plan": "pro", "cms_name": "yookassa_sdk_python"}
    assert payment.receipt_registration == "pending"
    assert payment.confirmation.type == "redirect"
    assert payment.confirmation.confirmation_url.startswith(f"{kassa.url}/checkout/")
    assert "token=" in payment.confirmation.confirmation_url
    assert payment.confirmation.confirmation_url == kassa.confirmation_url(payment.id)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", payment.created_at)

    stored = kassa.payments[payment.id]
    assert stored["amount"] == {"value": "599.00", "currency": "RUB"}
    assert stored["recipient"]["account_id"] == kassa.shop_id
    [request] = kassa.created_requests
    assert request.idempotence_key == "key-1"
    assert request.json["receipt"]["customer"] == {"email": "user@example.com"}
    assert request.json["metadata"] == {"user_id": 42, "plan": "pro", "cms_name": "yookassa_sdk_python"}
    assert request.headers["Authorization"].startswith("Basic ")
    assert request.status == 200


async def test_same_idempotence_key_returns_the_stored_payment(kassa: FakeYooKassa) -> None:
    first = await create(payment_params(), "same-key")
    kassa.succeed(first.id)
    again = await create(payment_params(), "same-key")
    assert again.id == first.id
    # YooKassa replays the original response, not the current state.
    assert again.status == "pending"
    assert len(kassa.payments) == 1
    assert len(kassa.created_requests) == 2

    with pytest.raises(BadRequestError) as caught:
        await create(payment_params(value="100.00"), "same-key")
    assert caught.value.content["parameter"] == "Idempotence-Key"
    other = await create(payment_params(), "another-key")
    assert other.id != first.id


async def test_missing_idempotence_key_and_bad_json_are_rejected(kassa: FakeYooKassa) -> None:
    async with aiohttp.ClientSession(headers=auth_headers(kassa)) as session:
        async with session.post(f"{kassa.api_url}/payments", json=payment_params()) as response:
            assert response.status == 400
            body = await response.json()
        async with session.post(
            f"{kassa.api_url}/payments", data=b"{not json", headers={"Idempotence-Key": "k"}
        ) as bad:
            assert bad.status == 400
    assert body["type"] == "error"
    assert body["code"] == "invalid_request"
    assert body["parameter"] == "Idempotence-Key"
    assert ID_RE.match(body["id"])
    assert kassa.payments == {}


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        (payment_params(value="0.00"), "amount.value"),
        (payment_params(value="10.001"), "amount.value"),
        (payment_params(amount={"value": "10.00", "currency": "XXX"}), "amount.currency"),
        (payment_params(confirmation={"type": "redirect"}), "confirmation.return_url"),
        (payment_params(confirmation={"type": "telepathy"}), "confirmation.type"),
        (payment_params(description="x" * 129), "description"),
        (payment_params(metadata={f"k{i}": "v" for i in range(17)}), "metadata"),
        (payment_params(metadata={"nested": {"a": 1}}), "metadata"),
        (payment_params(receipt=receipt(value="500.00")), "receipt"),
        (payment_params(receipt={"items": receipt()["items"]}), "receipt.customer"),
        (payment_params(receipt={"customer": {"email": "a@b.c"}, "items": []}), "receipt.items"),
    ],
)
async def test_invalid_payments_are_rejected_with_the_parameter(
    kassa: FakeYooKassa, params: dict[str, Any], parameter: str
) -> None:
    headers = {"Idempotence-Key": str(uuid.uuid4())}
    # Raw HTTP, because the SDK validates some of these fields itself before sending.
    async with (
        aiohttp.ClientSession(headers=auth_headers(kassa)) as session,
        session.post(f"{kassa.api_url}/payments", json=params, headers=headers) as response,
    ):
        body = await response.json()
    assert response.status == 400
    assert body["code"] == "invalid_request"
    assert body["parameter"] == parameter
    assert kassa.payments == {}


async def test_receipt_with_quantity_matching_the_total_is_accepted(kassa: FakeYooKassa) -> None:
    payment = await create(payment_params(value="300.00", receipt=receipt(value="100.00", quantity="3")))
    assert payment.status == "pending"


async def test_sdk_surfaces_validation_errors_as_bad_request(kassa: FakeYooKassa) -> None:
    with pytest.raises(BadRequestError) as caught:
        await create(payment_params(receipt=receipt(value="1.00")))
    assert caught.value.content["parameter"] == "receipt"
    assert "doesn't match" in caught.value.content["description"]


async def test_require_receipt() -> None:
    async with FakeYooKassa(require_receipt=True) as strict:
        Configuration.configure(strict.shop_id, strict.secret_key, api_url=strict.api_url)
        with pytest.raises(BadRequestError):
            await create(payment_params())
        payment = await create(payment_params(receipt=receipt()))
    assert payment.receipt_registration == "pending"


async def test_wrong_credentials_are_unauthorized(kassa: FakeYooKassa) -> None:
    Configuration.configure(kassa.shop_id, "wrong_secret", api_url=kassa.api_url)
    with pytest.raises(UnauthorizedError) as caught:
        await create(payment_params())
    assert caught.value.content["code"] == "invalid_credentials"
    assert kassa.payments == {}
    assert kassa.requests[0].status == 401


async def test_succeed_then_fetch(kassa: FakeYooKassa) -> None:
    payment = await create(payment_params(receipt=receipt()))
    kassa.succeed(payment.id)
    fetched = await asyncio.to_thread(Payment.find_one, payment.id)
    assert fetched.status == "succeeded"
    assert fetched.paid is True
    assert fetched.refundable is True
    assert fetched.captured_at is not None
    assert fetched.income_amount.value < fetched.amount.value
    assert str(fetched.refunded_amount.value) == "0.00"
    assert fetched.payment_method.type == "bank_card"
    assert fetched.payment_method.card.last4 == "4444"
    assert fetched.receipt_registration == "succeeded"
    with pytest.raises(ValueError, match="not pending"):
        kassa.succeed(payment.id)


async def test_unknown_payment_is_not_found(kassa: FakeYooKassa) -> None:
    with pytest.raises(NotFoundError) as caught:
        await asyncio.to_thread(Payment.find_one, "00000000-000f-5000-8000-000000000000")
    assert caught.value.content["code"] == "not_found"


async def test_cancel_sets_cancellation_details(kassa: FakeYooKassa) -> None:
    declined = await create(payment_params())
    expired = await create(payment_params())
    kassa.cancel(declined.id)
    kassa.cancel(expired.id, reason="expired_on_confirmation")

    first = await asyncio.to_thread(Payment.find_one, declined.id)
    second = await asyncio.to_thread(Payment.find_one, expired.id)
    assert (first.status, first.paid) == ("canceled", False)
    assert (first.cancellation_details.party, first.cancellation_details.reason) == (
        "payment_network",
        "insufficient_funds",
    )
    assert (second.cancellation_details.party, second.cancellation_details.reason) == (
        "yoo_money",
        "expired_on_confirmation",
    )
    with pytest.raises(ValueError, match="cannot be canceled"):
        kassa.cancel(declined.id)


async def test_two_stage_payment_capture_and_merchant_cancel(kassa: FakeYooKassa) -> None:
    held = await create(payment_params(capture=False))
    dropped = await create(payment_params(capture=False))
    assert kassa.succeed(held.id)["status"] == "waiting_for_capture"
    kassa.succeed(dropped.id)

    captured = await asyncio.to_thread(Payment.capture, held.id, None, str(uuid.uuid4()))
    canceled = await asyncio.to_thread(Payment.cancel, dropped.id, str(uuid.uuid4()))
    assert captured.status == "succeeded"
    assert canceled.status == "canceled"
    assert canceled.cancellation_details.party == "merchant"
    assert canceled.cancellation_details.reason == "canceled_by_merchant"


async def test_refunds_partial_then_full(kassa: FakeYooKassa) -> None:
    payment = await create(payment_params())
    kassa.succeed(payment.id)

    partial = await asyncio.to_thread(
        Refund.create,
        {"payment_id": payment.id, "amount": {"value": "199.00", "currency": "RUB"}, "description": "Sorry"},
        "refund-1",
    )
    assert ID_RE.match(partial.id)
    assert partial.status == "succeeded"
    assert partial.payment_id == payment.id
    assert str(partial.amount.value) == "199.00"
    assert kassa.payments[payment.id]["refunded_amount"]["value"] == "199.00"
    assert kassa.payments[payment.id]["refundable"] is True

    repeated = await asyncio.to_thread(
        Refund.create,
        {"payment_id": payment.id, "amount": {"value": "199.00", "currency": "RUB"}, "description": "Sorry"},
        "refund-1",
    )
    assert repeated.id == partial.id
    assert len(kassa.refunds) == 1

    with pytest.raises(BadRequestError) as caught:
        await asyncio.to_thread(
            Refund.create, {"payment_id": payment.id, "amount": {"value": "400.01", "currency": "RUB"}}
        )
    assert caught.value.content["parameter"] == "amount.value"

    rest = await asyncio.to_thread(
        Refund.create, {"payment_id": payment.id, "amount": {"value": "400.00", "currency": "RUB"}}
    )
    fetched = await asyncio.to_thread(Refund.find_one, rest.id)
    assert fetched.id == rest.id
    assert str(fetched.amount.value) == "400.00"
    after = await asyncio.to_thread(Payment.find_one, payment.id)
    assert str(after.refunded_amount.value) == "599.00"
    assert after.refundable is False
    refund_values = [r.json["amount"]["value"] for r in kassa.refund_requests]
    assert refund_values == ["199.00", "199.00", "400.01", "400.00"]


async def test_refund_of_unpaid_or_unknown_payment_is_rejected(kassa: FakeYooKassa) -> None:
    pending = await create(payment_params())
    for payment_id in (pending.id, "00000000-000f-5000-8000-000000000000"):
        with pytest.raises(BadRequestError) as caught:
            await asyncio.to_thread(
                Refund.create, {"payment_id": payment_id, "amount": {"value": "1.00", "currency": "RUB"}}
            )
        assert caught.value.content["parameter"] == "payment_id"
    assert kassa.refunds == {}


async def test_down_answers_500(kassa: FakeYooKassa) -> None:
    kassa.down = True
    with pytest.raises(InternalServerError) as caught:
        await create(payment_params())
    assert caught.value.content["code"] == "internal_server_error"
    kassa.down = False
    assert (await create(payment_params())).status == "pending"


async def test_hang_holds_requests_until_released(kassa: FakeYooKassa) -> None:
    kassa.hang = True
    call = asyncio.ensure_future(create(payment_params()))
    await kassa.wait_for_requests(1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(call), 0.3)
    assert len(kassa.created_requests) == 1
    assert kassa.payments == {}
    kassa.hang = False
    payment = await asyncio.wait_for(call, 5)
    assert payment.status == "pending"


async def test_hanging_request_gets_500_when_the_fake_closes() -> None:
    async with FakeYooKassa() as server:
        Configuration.configure(server.shop_id, server.secret_key, api_url=server.api_url)
        server.hang = True
        call = asyncio.ensure_future(create(payment_params()))
        await server.wait_for_requests(1)
    with pytest.raises(InternalServerError):
        await asyncio.wait_for(call, 5)


async def test_notifications_parse_with_the_sdk(kassa: FakeYooKassa) -> None:
    paid = await create(payment_params())
    failed = await create(payment_params())
    kassa.succeed(paid.id)
    kassa.cancel(failed.id, reason="card_expired")
    refund = await asyncio.to_thread(
        Refund.create, {"payment_id": paid.id, "amount": {"value": "599.00", "currency": "RUB"}}
    )

    succeeded = kassa.notification("payment.succeeded", paid.id)
    assert succeeded["type"] == "notification"
    assert succeeded["event"] == "payment.succeeded"
    assert succeeded["object"]["id"] == paid.id
    assert succeeded["object"]["metadata"]["user_id"] == "42"
    parsed = WebhookNotificationFactory().create(succeeded)
    assert (parsed.object.id, parsed.object.status, parsed.object.paid) == (paid.id, "succeeded", True)

    canceled = WebhookNotificationFactory().create(kassa.notification("payment.canceled", failed.id))
    assert canceled.event == "payment.canceled"
    assert canceled.object.cancellation_details.reason == "card_expired"

    refunded = WebhookNotificationFactory().create(kassa.notification("refund.succeeded", refund.id))
    assert (refunded.object.id, refunded.object.payment_id) == (refund.id, paid.id)

    # A copy: the test may tamper with it without changing the fake's state.
    succeeded["object"]["status"] = "canceled"
    assert kassa.payments[paid.id]["status"] == "succeeded"
    with pytest.raises(ValueError, match="unsupported event"):
        kassa.notification("payment.exploded", paid.id)
    with pytest.raises(KeyError):
        kassa.notification("refund.succeeded", paid.id)


async def test_send_notification_posts_to_a_webhook(kassa: FakeYooKassa) -> None:
    received: list[dict[str, Any]] = []

    async def webhook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/yookassa", webhook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        payment = await create(payment_params())
        kassa.succeed(payment.id)
        url = f"http://127.0.0.1:{port}/yookassa"
        status = await kassa.send_notification(url, "payment.succeeded", payment.id)
    finally:
        await runner.cleanup()
    assert status == 200
    assert received == [kassa.notification("payment.succeeded", payment.id)]


async def test_opening_the_confirmation_url_pays(kassa: FakeYooKassa) -> None:
    payment = await create(payment_params())
    async with aiohttp.ClientSession() as session:
        async with session.get(payment.confirmation.confirmation_url) as response:
            assert response.status == 200
        forged = f"{kassa.url}/checkout/payments/v2/contract?orderId={payment.id}&token=x"
        async with session.get(forged) as bad:
            assert bad.status == 404
    assert kassa.payments[payment.id]["status"] == "succeeded"


async def test_saved_payment_method_charges_without_confirmation(kassa: FakeYooKassa) -> None:
    first = await create(payment_params(save_payment_method=True))
    method = kassa.succeed(first.id)["payment_method"]
    assert method["saved"] is True

    params = payment_params(payment_method_id=method["id"])
    del params["confirmation"]
    renewal = await create(params)
    assert renewal.status == "succeeded"
    assert renewal.paid is True
    assert renewal.payment_method.id == method["id"]

    with pytest.raises(BadRequestError):
        await create({**params, "payment_method_id": "unknown"})


async def test_list_payments(kassa: FakeYooKassa) -> None:
    first = await create(payment_params())
    second = await create(payment_params())
    kassa.succeed(second.id)
    listed = await asyncio.to_thread(Payment.list, {"status": "succeeded"})
    assert [p.id for p in listed.items] == [second.id]
    everything = await asyncio.to_thread(Payment.list, {"limit": 10})
    assert [p.id for p in everything.items] == [second.id, first.id]


async def test_runs_standalone_as_a_process() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.yookassa_server",
        "--port",
        "0",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        api_url = line.decode().strip()
        assert re.match(r"^http://127\.0\.0\.1:\d+/v3$", api_url)
        Configuration.configure("123", "test_secret", api_url=api_url)
        payment = await create(payment_params())
        assert payment.status == "pending"
    finally:
        process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0
    assert b"payments=1" in stderr
