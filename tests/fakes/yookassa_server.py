"""A fake YooKassa API v3 served over real HTTP on 127.0.0.1.

The product uses the unmodified ``yookassa`` SDK configured with
``Configuration.configure(shop_id, secret_key, api_url=fake.api_url)``; the SDK then requests
``{api_url}/payments``, ``{api_url}/payments/{id}``, ``{api_url}/refunds`` and so on. The fake checks Basic
auth, honours ``Idempotence-Key``, validates what YooKassa validates (amount, currency, confirmation,
metadata limits, receipt totals) and answers with realistic objects and YooKassa's error body
``{"type": "error", "id", "code", "description", "parameter"}``.

The user's side of a payment is driven by the test: ``succeed()`` (the user paid), ``cancel()`` (declined
or expired); ``notification()`` builds the webhook body YooKassa would POST to the shop, and
``send_notification()`` posts it. The SDK is synchronous, so from async tests call it through
``asyncio.to_thread`` while the fake answers in the event loop::

    async with FakeYooKassa() as kassa:
        Configuration.configure(kassa.shop_id, kassa.secret_key, api_url=kassa.api_url)
        payment = await asyncio.to_thread(Payment.create, {...}, "idempotence-key-1")
        kassa.succeed(payment.id)
        body = kassa.notification("payment.succeeded", payment.id)

Standalone: ``python -m tests.fakes.yookassa_server --port 8082`` prints the API URL.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import json
import re
import secrets
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from tests.fakes.serving import AppServer

__all__ = ["FakeYooKassa", "RecordedRequest", "YooKassaError"]

_CURRENCIES = frozenset({"RUB", "USD", "EUR", "BYN", "KZT", "UAH", "UZS", "CNY"})
_CONFIRMATION_TYPES = frozenset({"redirect", "embedded", "external", "qr", "mobile_application"})
_AMOUNT_RE = re.compile(r"^\d+(\.\d{1,2})?$")
_QUANTITY_RE = re.compile(r"^\d+(\.\d{1,3})?$")
# Roughly what YooKassa takes as a receipt's address; ``FakeYooKassa.refused_emails`` adds ones it refuses although
# they look right (the real check is YooKassa's own).
_EMAIL_RE = re.compile(r"^[^@\s.][^@\s]*@[^@\s.]+(\.[^@\s.]+)*\.[^@\s.]{2,}$")
_EVENTS = frozenset({"payment.succeeded", "payment.canceled", "payment.waiting_for_capture", "refund.succeeded"})
# Who cancels a payment for a given reason, as YooKassa reports it in cancellation_details.party.
_MERCHANT_REASONS = frozenset({"canceled_by_merchant", "expired_on_capture"})
_YOO_MONEY_REASONS = frozenset({"fraud_suspected", "expired_on_confirmation", "internal_timeout"})
# What the shop receives after YooKassa's fee; only used to make income_amount look realistic.
_INCOME_SHARE = Decimal("0.965")
_BODY = web.RequestKey("yookassa_body", dict[str, Any])


@dataclass
class RecordedRequest:
    """One API request as the fake saw it."""

    method: str
    path: str
    headers: CIMultiDict[str]
    json: dict[str, Any]
    query: dict[str, str]
    status: int | None = None

    @property
    def idempotence_key(self) -> str | None:
        return self.headers.get("Idempotence-Key")


class YooKassaError(Exception):
    """Raised by handlers; rendered as YooKassa's error body."""

    def __init__(self, status: int, code: str, description: str, parameter: str | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description
        self.parameter = parameter

    def response(self) -> web.Response:
        body: dict[str, Any] = {
            "type": "error",
            "id": str(uuid.uuid4()),
            "code": self.code,
            "description": self.description,
        }
        if self.parameter is not None:
            body["parameter"] = self.parameter
        return web.json_response(body, status=self.status)


def _invalid(description: str, parameter: str | None = None) -> YooKassaError:
    return YooKassaError(400, "invalid_request", description, parameter)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _object_id(marker: str) -> str:
    # YooKassa ids look like UUIDs with a fixed middle: 2f0e6ff9-000f-5000-8000-1a2b3c4d5e6f.
    return f"{uuid.uuid4().hex[:8]}-{marker}-5000-8000-{uuid.uuid4().hex[:12]}"


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def _parse_amount(raw: Any, parameter: str, currency: str | None = None) -> tuple[Decimal, str]:
    if not isinstance(raw, dict):
        raise _invalid(f"Parameter {parameter} is missing or has an invalid type", parameter)
    value = raw.get("value")
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _AMOUNT_RE.match(value):
        raise _invalid(f"Invalid {parameter}.value: {value!r}", f"{parameter}.value")
    amount = Decimal(value)
    if amount <= 0:
        raise _invalid(f"{parameter}.value must be greater than zero", f"{parameter}.value")
    raw_currency = raw.get("currency")
    if not isinstance(raw_currency, str) or raw_currency not in _CURRENCIES:
        raise _invalid(f"Invalid currency: {raw_currency!r}", f"{parameter}.currency")
    if currency is not None and raw_currency != currency:
        raise _invalid(f"{parameter}.currency must be {currency}", f"{parameter}.currency")
    return amount, raw_currency


def _parse_metadata(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _invalid("metadata must be an object", "metadata")
    if len(raw) > 16:
        raise _invalid("metadata may have at most 16 keys", "metadata")
    result: dict[str, str] = {}
    for key, value in raw.items():
        if len(key) > 32:
            raise _invalid(f"metadata key {key!r} is longer than 32 characters", "metadata")
        if isinstance(value, dict | list):
            raise _invalid(f"metadata value for {key!r} must be a string", "metadata")
        # YooKassa stores metadata as strings whatever JSON type was sent.
        text = json.dumps(value) if isinstance(value, bool) or value is None else str(value)
        if len(text) > 512:
            raise _invalid(f"metadata value for {key!r} is longer than 512 characters", "metadata")
        result[key] = text
    return result


def _validate_receipt(raw: Any, amount: Decimal, currency: str, refused_emails: frozenset[str] = frozenset()) -> None:
    if not isinstance(raw, dict):
        raise _invalid("receipt must be an object", "receipt")
    customer = raw.get("customer")
    has_contact = isinstance(customer, dict) and (customer.get("email") or customer.get("phone"))
    if not has_contact and not (raw.get("email") or raw.get("phone")):
        raise _invalid("Receipt customer email or phone is required", "receipt.customer")
    items = raw.get("items")
    if not isinstance(items, list) or not items or len(items) > 100:
        raise _invalid("Receipt must contain from 1 to 100 items", "receipt.items")
    total = Decimal(0)
    for index, item in enumerate(items):
        where = f"receipt.items[{index}]"
        if not isinstance(item, dict):
            raise _invalid(f"{where} must be an object", where)
        description = item.get("description")
        if not isinstance(description, str) or not 1 <= len(description) <= 128:
            raise _invalid(f"{where}.description must be 1..128 characters", f"{where}.description")
        quantity_raw = item.get("quantity")
        quantity_text = str(quantity_raw) if isinstance(quantity_raw, int | float | str) else ""
        try:
            quantity = Decimal(quantity_text)
        except InvalidOperation:
            quantity = Decimal(0)
        if not _QUANTITY_RE.match(quantity_text) or quantity <= 0:
            raise _invalid(f"{where}.quantity is invalid: {quantity_raw!r}", f"{where}.quantity")
        price, _ = _parse_amount(item.get("amount"), f"{where}.amount", currency)
        vat_code = item.get("vat_code")
        if not isinstance(vat_code, int) or isinstance(vat_code, bool) or not 1 <= vat_code <= 12:
            raise _invalid(f"{where}.vat_code is invalid: {vat_code!r}", f"{where}.vat_code")
        total += price * quantity
    if total.quantize(Decimal("0.01")) != amount:
        raise _invalid(
            f"The sum of the receipt items ({_money(total)}) doesn't match the payment amount ({_money(amount)})",
            "receipt",
        )
    email = customer.get("email") if isinstance(customer, dict) else None
    if email is not None and (not isinstance(email, str) or not _EMAIL_RE.match(email) or email in refused_emails):
        raise _invalid("Invalid receipt.customer.email value", "receipt.customer.email")


class FakeYooKassa(AppServer):
    """YooKassa API v3 on 127.0.0.1; an async context manager running in the current event loop.

    State is plain dicts keyed by id (``payments``, ``refunds``) holding the objects exactly as the API
    returns them. Set ``down = True`` to answer every request with 500, or ``hang = True`` to hold requests
    without answering (until ``hang`` is reset or the fake closes). With ``hold_answers = True`` new POST
    requests are carried out at once but their answers are held (a slow network on the way back) until it is
    reset; a repeated request (a known idempotence key) is still answered at once.
    """

    def __init__(
        self,
        shop_id: str = "123",
        secret_key: str = "test_secret",
        *,
        require_receipt: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.shop_id = shop_id
        self.secret_key = secret_key
        # Shops under 54-FZ must send a receipt with every payment; YooKassa then rejects payments without.
        self.require_receipt = require_receipt
        # Receipt addresses answered as invalid (HTTP 400, parameter receipt.customer.email) besides malformed ones.
        self.refused_emails: set[str] = set()
        # The status new refunds get: "pending" leaves them to ``settle_refund`` (the bank has not confirmed yet).
        self.refund_status = "succeeded"
        self.host = host
        self.port = port
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.requests: list[RecordedRequest] = []
        self.down = False
        self.hang = False
        self.hold_answers = False
        self._capture: dict[str, bool] = {}
        self._save_method: dict[str, bool] = {}
        self._tokens: dict[str, str] = {}
        self._saved_methods: dict[str, dict[str, Any]] = {}
        # (path, key) -> (request fingerprint, stored response body)
        self._idempotent: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/v3/payments", self._create_payment)
        app.router.add_get("/v3/payments", self._list_payments)
        app.router.add_get("/v3/payments/{payment_id}", self._get_payment)
        app.router.add_post("/v3/payments/{payment_id}/capture", self._capture_payment)
        app.router.add_post("/v3/payments/{payment_id}/cancel", self._cancel_payment)
        app.router.add_post("/v3/refunds", self._create_refund)
        app.router.add_get("/v3/refunds", self._list_refunds)
        app.router.add_get("/v3/refunds/{refund_id}", self._get_refund)
        app.router.add_get("/checkout/payments/v2/contract", self._checkout)
        return app

    @property
    def api_url(self) -> str:
        """What to pass as ``Configuration.configure(..., api_url=...)``."""
        return f"{self.url}/v3"

    def client_env(self) -> dict[str, str]:
        """The settings of a Pomogator process that takes payments through this fake."""
        return {
            "POMOGATOR_YOOKASSA_SHOP_ID": self.shop_id,
            "POMOGATOR_YOOKASSA_SECRET_KEY": self.secret_key,
            "POMOGATOR_YOOKASSA_API_URL": self.api_url,
            "POMOGATOR_YOOKASSA_TIMEOUT": "2",
        }

    # ---- test controls -----------------------------------------------------------------------------

    @property
    def created_requests(self) -> list[RecordedRequest]:
        """Every ``POST /payments`` received (including rejected ones and idempotent repeats)."""
        return [r for r in self.requests if r.method == "POST" and r.path == "/v3/payments"]

    @property
    def refund_requests(self) -> list[RecordedRequest]:
        """Every ``POST /refunds`` received."""
        return [r for r in self.requests if r.method == "POST" and r.path == "/v3/refunds"]

    async def wait_for_requests(
        self,
        n: int,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[RecordedRequest]:
        """Wait until at least ``n`` API requests arrived (the SDK runs in other threads)."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < n:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"FakeYooKassa: timed out after {timeout}s waiting for {n} request(s); got {len(self.requests)}"
                )
            await asyncio.sleep(0.005)
        return list(self.requests)

    def succeed(self, payment_id: str) -> dict[str, Any]:
        """The user paid: ``succeeded`` (or ``waiting_for_capture`` when created with ``capture: false``).

        Returns a copy of the updated payment.
        """
        payment = self._payment(payment_id)
        if payment["status"] != "pending":
            raise ValueError(f"payment {payment_id} is {payment['status']}, not pending")
        save = self._save_method.get(payment_id, False)
        method_type = payment.get("payment_method", {}).get("type", "bank_card")
        method: dict[str, Any] = {
            "type": method_type,
            "id": payment_id,
            "saved": save,
            "status": "active" if save else "inactive",
        }
        if method_type == "bank_card":
            method["title"] = "Bank card *4444"
            method["card"] = {
                "first6": "555555",
                "last4": "4444",
                "expiry_year": "2030",
                "expiry_month": "12",
                "card_type": "MasterCard",
                "issuer_country": "RU",
            }
        payment["payment_method"] = method
        if save:
            self._saved_methods[payment_id] = method
        payment["paid"] = True
        payment["authorization_details"] = {
            "rrn": f"{secrets.randbelow(10**12):012d}",
            "auth_code": f"{secrets.randbelow(10**6):06d}",
            "three_d_secure": {"applied": False},
        }
        if self._capture.get(payment_id, False):
            self._mark_captured(payment)
        else:
            payment["status"] = "waiting_for_capture"
            payment["expires_at"] = _now()
        return copy.deepcopy(payment)

    def cancel(self, payment_id: str, reason: str = "insufficient_funds", party: str | None = None) -> dict[str, Any]:
        """The payment failed or expired; ``party`` defaults to who YooKassa blames for ``reason``."""
        payment = self._payment(payment_id)
        if payment["status"] not in ("pending", "waiting_for_capture"):
            raise ValueError(f"payment {payment_id} is {payment['status']} and cannot be canceled")
        if party is None:
            if reason in _MERCHANT_REASONS:
                party = "merchant"
            elif reason in _YOO_MONEY_REASONS:
                party = "yoo_money"
            else:
                party = "payment_network"
        payment["status"] = "canceled"
        payment["paid"] = False
        payment["refundable"] = False
        payment.pop("expires_at", None)
        payment["cancellation_details"] = {"party": party, "reason": reason}
        return copy.deepcopy(payment)

    def settle_refund(self, refund_id: str, status: str = "succeeded") -> dict[str, Any]:
        """A pending refund is made (``succeeded``: the payment's refunded amount grows) or ``canceled``."""
        refund = self._refund(refund_id)
        if refund["status"] != "pending":
            raise ValueError(f"refund {refund_id} is {refund['status']}, not pending")
        refund["status"] = status
        if status == "succeeded":
            payment = self._payment(refund["payment_id"])
            self._add_refunded(payment, Decimal(refund["amount"]["value"]))
        else:
            refund["cancellation_details"] = {"party": "refund_network", "reason": "rejected_by_payee"}
        return copy.deepcopy(refund)

    def _add_refunded(self, payment: dict[str, Any], amount: Decimal) -> None:
        currency = payment["amount"]["currency"]
        refunded = Decimal(payment.get("refunded_amount", {}).get("value", "0")) + amount
        payment["refunded_amount"] = {"value": _money(refunded), "currency": currency}
        payment["refundable"] = refunded < Decimal(payment["amount"]["value"])

    def notification(self, event: str, object_id: str) -> dict[str, Any]:
        """The webhook body YooKassa POSTs for ``event`` about the payment or refund ``object_id``.

        The object is the current state; call ``succeed``/``cancel`` first for a consistent notification.
        """
        if event not in _EVENTS:
            raise ValueError(f"unsupported event {event!r}; expected one of {sorted(_EVENTS)}")
        obj = self._refund(object_id) if event.startswith("refund.") else self._payment(object_id)
        return {"type": "notification", "event": event, "object": copy.deepcopy(obj)}

    async def send_notification(self, url: str, event: str, object_id: str) -> int:
        """POST ``notification(event, object_id)`` to ``url`` as YooKassa does; returns the HTTP status."""
        body = self.notification(event, object_id)
        async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
            await response.read()
            return response.status

    def confirmation_url(self, payment_id: str) -> str:
        """The fake checkout page; GET it to pay (as if the user completed the form)."""
        token = self._tokens[payment_id]
        return f"{self.url}/checkout/payments/v2/contract?orderId={payment_id}&token={token}"

    # ---- internals ---------------------------------------------------------------------------------

    def _payment(self, payment_id: str) -> dict[str, Any]:
        try:
            return self.payments[payment_id]
        except KeyError:
            raise KeyError(f"no such payment: {payment_id}") from None

    def _refund(self, refund_id: str) -> dict[str, Any]:
        try:
            return self.refunds[refund_id]
        except KeyError:
            raise KeyError(f"no such refund: {refund_id}") from None

    def _mark_captured(self, payment: dict[str, Any]) -> None:
        amount = Decimal(payment["amount"]["value"])
        currency = payment["amount"]["currency"]
        payment["status"] = "succeeded"
        payment["paid"] = True
        payment["captured_at"] = _now()
        payment.pop("expires_at", None)
        payment["income_amount"] = {"value": _money(amount * _INCOME_SHARE), "currency": currency}
        payment["refunded_amount"] = {"value": "0.00", "currency": currency}
        payment["refundable"] = True
        if "receipt_registration" in payment:
            payment["receipt_registration"] = "succeeded"

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(token, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        return decoded == f"{self.shop_id}:{self.secret_key}"

    async def _wait_while_hanging(self) -> bool:
        """Hold the request while ``hang`` is set; False when the fake is closing instead."""
        assert self._closing is not None
        while self.hang:
            if self._closing.is_set():
                return False
            await asyncio.sleep(0.01)
        return True

    async def _wait_while_holding(self) -> None:
        assert self._closing is not None
        while self.hold_answers:
            if self._closing.is_set():
                return
            await asyncio.sleep(0.01)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            headers=CIMultiDict(request.headers),
            json=body if isinstance(body, dict) else {},
            query=dict(request.query),
        )
        self.requests.append(record)
        response = await self._dispatch(request, handler, body, record)
        record.status = response.status
        return response

    async def _dispatch(
        self,
        request: web.Request,
        handler: Handler,
        body: Any,
        record: RecordedRequest,
    ) -> web.StreamResponse:
        if request.path.startswith("/checkout/"):
            return await handler(request)
        try:
            if not await self._wait_while_hanging():
                raise YooKassaError(500, "internal_server_error", "Internal server error")
            if self.down:
                raise YooKassaError(500, "internal_server_error", "Internal server error")
            if not self._authorized(request):
                raise YooKassaError(
                    401, "invalid_credentials", "Authentication by given credentials failed (shopId or key)"
                )
            if not isinstance(body, dict):
                raise _invalid("Request body is not a valid JSON object")
            if request.method != "POST":
                return await handler(request)
            key = record.idempotence_key
            if not key:
                raise _invalid("Idempotence key isn't specified", "Idempotence-Key")
            if len(key) > 64:
                raise _invalid("Idempotence key is longer than 64 characters", "Idempotence-Key")
            fingerprint = json.dumps(body, sort_keys=True)
            stored = self._idempotent.get((request.path, key))
            if stored is not None:
                if stored[0] != fingerprint:
                    raise _invalid("Idempotence key duplicated with different parameters", "Idempotence-Key")
                return web.json_response(stored[1])
            request[_BODY] = body
            result = await handler(request)
            if isinstance(result, web.Response) and result.status == 200 and result.body is not None:
                assert isinstance(result.body, bytes)
                self._idempotent[(request.path, key)] = (fingerprint, json.loads(result.body))
            await self._wait_while_holding()
            return result
        except YooKassaError as error:
            return error.response()

    # ---- handlers ----------------------------------------------------------------------------------

    async def _create_payment(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = request[_BODY]
        amount, currency = _parse_amount(body.get("amount"), "amount")
        description = body.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 128):
            raise _invalid("description must be a string of at most 128 characters", "description")
        metadata = _parse_metadata(body.get("metadata"))
        receipt = body.get("receipt")
        if receipt is not None:
            _validate_receipt(receipt, amount, currency, frozenset(self.refused_emails))
        elif self.require_receipt:
            raise _invalid("Receipt is missing or illegal", "receipt")
        capture = body.get("capture", False)
        if not isinstance(capture, bool):
            raise _invalid("capture must be a boolean", "capture")

        payment_id = _object_id("000f")
        payment: dict[str, Any] = {
            "id": payment_id,
            "status": "pending",
            "paid": False,
            "amount": {"value": _money(amount), "currency": currency},
            "recipient": {"account_id": self.shop_id, "gateway_id": "1000001"},
            "created_at": _now(),
            "test": True,
            "refundable": False,
            "metadata": metadata,
        }
        if description is not None:
            payment["description"] = description
        if receipt is not None:
            payment["receipt_registration"] = "pending"

        method_id = body.get("payment_method_id")
        method_data = body.get("payment_method_data")
        if method_data is not None:
            if not isinstance(method_data, dict) or not isinstance(method_data.get("type"), str):
                raise _invalid("payment_method_data.type is required", "payment_method_data.type")
            payment["payment_method"] = {
                "type": method_data["type"],
                "id": payment_id,
                "saved": False,
                "status": "inactive",
            }

        if method_id is not None:
            saved = self._saved_methods.get(method_id) if isinstance(method_id, str) else None
            if saved is None:
                raise _invalid("Payment method is not found or not saved", "payment_method_id")
            # A saved method charges without the user, so the payment is authorized at once.
            self.payments[payment_id] = payment
            self._capture[payment_id] = capture
            payment["payment_method"] = copy.deepcopy(saved)
            payment["paid"] = True
            if capture:
                self._mark_captured(payment)
            else:
                payment["status"] = "waiting_for_capture"
            return web.json_response(payment)

        payment["confirmation"] = self._confirmation(body.get("confirmation"), payment_id)
        self.payments[payment_id] = payment
        self._capture[payment_id] = capture
        self._save_method[payment_id] = bool(body.get("save_payment_method", False))
        return web.json_response(payment)

    def _confirmation(self, raw: Any, payment_id: str) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise _invalid("Confirmation is required for this payment method", "confirmation")
        kind = raw.get("type")
        if kind not in _CONFIRMATION_TYPES:
            raise _invalid(f"Invalid confirmation type: {kind!r}", "confirmation.type")
        token = secrets.token_urlsafe(12)
        self._tokens[payment_id] = token
        confirmation: dict[str, Any] = {"type": kind}
        if kind == "redirect":
            return_url = raw.get("return_url")
            if not isinstance(return_url, str) or not return_url or len(return_url) > 2048:
                raise _invalid("confirmation.return_url is required for redirect", "confirmation.return_url")
            confirmation["return_url"] = return_url
            confirmation["confirmation_url"] = self.confirmation_url(payment_id)
        elif kind == "embedded":
            confirmation["confirmation_token"] = f"ct-{payment_id}-{token}"
        elif kind == "qr":
            confirmation["confirmation_data"] = f"https://qr.nspk.ru/{token}?type=02&bank=100000000111"
        elif kind == "mobile_application":
            confirmation["confirmation_url"] = self.confirmation_url(payment_id)
        return confirmation

    async def _get_payment(self, request: web.Request) -> web.Response:
        payment = self.payments.get(request.match_info["payment_id"])
        if payment is None:
            raise YooKassaError(404, "not_found", "Payment not found", "payment_id")
        return web.json_response(payment)

    async def _list_payments(self, request: web.Request) -> web.Response:
        items = list(reversed(self.payments.values()))
        status = request.query.get("status")
        if status:
            items = [p for p in items if p["status"] == status]
        limit = int(request.query.get("limit", "10"))
        return web.json_response({"type": "list", "items": items[:limit]})

    async def _capture_payment(self, request: web.Request) -> web.Response:
        payment = self.payments.get(request.match_info["payment_id"])
        if payment is None:
            raise YooKassaError(404, "not_found", "Payment not found", "payment_id")
        if payment["status"] != "waiting_for_capture":
            raise _invalid(f"Payment is {payment['status']}, only waiting_for_capture can be captured")
        body: dict[str, Any] = request[_BODY]
        if "amount" in body:
            captured, _ = _parse_amount(body["amount"], "amount", payment["amount"]["currency"])
            if captured > Decimal(payment["amount"]["value"]):
                raise _invalid("Capture amount exceeds the payment amount", "amount.value")
            payment["amount"]["value"] = _money(captured)
        self._mark_captured(payment)
        return web.json_response(payment)

    async def _cancel_payment(self, request: web.Request) -> web.Response:
        payment = self.payments.get(request.match_info["payment_id"])
        if payment is None:
            raise YooKassaError(404, "not_found", "Payment not found", "payment_id")
        if payment["status"] != "waiting_for_capture":
            raise _invalid(f"Payment is {payment['status']}, only waiting_for_capture can be canceled")
        self.cancel(payment["id"], reason="canceled_by_merchant")
        return web.json_response(payment)

    async def _create_refund(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = request[_BODY]
        payment_id = body.get("payment_id")
        payment = self.payments.get(payment_id) if isinstance(payment_id, str) else None
        if payment is None:
            raise _invalid("Payment with the given payment_id doesn't exist", "payment_id")
        if payment["status"] != "succeeded":
            status = payment["status"]
            raise _invalid(f"Payment is {status}; only succeeded payments can be refunded", "payment_id")
        currency = payment["amount"]["currency"]
        amount, _ = _parse_amount(body.get("amount"), "amount", currency)
        refunded = Decimal(payment.get("refunded_amount", {}).get("value", "0"))
        remaining = Decimal(payment["amount"]["value"]) - refunded
        if amount > remaining:
            message = f"Refund amount exceeds the refundable amount ({_money(remaining)})"
            raise _invalid(message, "amount.value")
        receipt = body.get("receipt")
        if receipt is not None:
            _validate_receipt(receipt, amount, currency, frozenset(self.refused_emails))
        elif self.require_receipt and "receipt_registration" in payment:
            # A payment that had a receipt is refunded with a receipt of the refund.
            raise _invalid("Receipt is missing or illegal", "receipt")
        description = body.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 250):
            raise _invalid("description must be a string of at most 250 characters", "description")

        refund: dict[str, Any] = {
            "id": _object_id("0015"),
            "payment_id": payment_id,
            "status": self.refund_status,
            "created_at": _now(),
            "amount": {"value": _money(amount), "currency": currency},
        }
        if description is not None:
            refund["description"] = description
        if "metadata" in body:
            refund["metadata"] = _parse_metadata(body["metadata"])
        if receipt is not None:
            refund["receipt_registration"] = "succeeded"
        self.refunds[refund["id"]] = refund
        if refund["status"] == "succeeded":
            self._add_refunded(payment, amount)
        return web.json_response(refund)

    async def _get_refund(self, request: web.Request) -> web.Response:
        refund = self.refunds.get(request.match_info["refund_id"])
        if refund is None:
            raise YooKassaError(404, "not_found", "Refund not found", "refund_id")
        return web.json_response(refund)

    async def _list_refunds(self, request: web.Request) -> web.Response:
        items = list(reversed(self.refunds.values()))
        payment_id = request.query.get("payment_id")
        if payment_id:
            items = [r for r in items if r["payment_id"] == payment_id]
        return web.json_response({"type": "list", "items": items})

    async def _checkout(self, request: web.Request) -> web.Response:
        payment_id = request.query.get("orderId", "")
        token = self._tokens.get(payment_id)
        if token is None or not secrets.compare_digest(token, request.query.get("token", "")):
            return web.Response(status=404, text="Unknown payment")
        payment = self.payments[payment_id]
        if payment["status"] == "pending":
            self.succeed(payment_id)
        return web.Response(text=f"Payment {payment_id}: {payment['status']}")


# --------------------------------------------------------------------------------------------------
# Standalone process
# --------------------------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    kassa = FakeYooKassa(
        args.shop_id, args.secret_key, require_receipt=args.require_receipt, host=args.host, port=args.port
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with kassa:
        print(kassa.api_url, flush=True)
        started = time.monotonic()
        await stop.wait()
        print(
            f"requests={len(kassa.requests)} payments={len(kassa.payments)} refunds={len(kassa.refunds)} "
            f"uptime={time.monotonic() - started:.1f}s",
            file=sys.stderr,
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake YooKassa API v3 server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--shop-id", default="123")
    parser.add_argument("--secret-key", default="test_secret")
    parser.add_argument("--require-receipt", action="store_true")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
