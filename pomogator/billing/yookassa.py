"""The one typed wrapper around the ``yookassa`` SDK.

The SDK is synchronous, untyped and keeps its configuration in process-global class state; its HTTP client uses
``requests`` with no timeout, turns connection errors into ``AttributeError`` and, given a logger, logs request
headers (the shop's Basic ``Authorization``). So:

* the SDK is configured here and only here, never with a logger (one shop per process);
* every call runs off the event loop (``asyncio.to_thread``) under a deadline;
* the SDK's ``ApiClient`` is replaced by a subclass whose ``requests`` session has a real timeout and whose errors
  become our domain exceptions (:class:`PaymentProviderUnavailable`, :class:`PaymentRejected`,
  :class:`PaymentNotFound`, and :class:`InvalidEmail` for a receipt address YooKassa refuses) carrying YooKassa's
  error code and description, never the request;
* answers become typed :mod:`pomogator.billing.models` objects.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3 import Retry
from yookassa import Configuration
from yookassa import Payment as SdkPayment
from yookassa import Refund as SdkRefund
from yookassa.client import ApiClient
from yookassa.domain.common import RequestObject

from pomogator.billing.models import ReceiptSpec, RemotePayment, RemoteRefund, is_object_id, money
from pomogator.config import YOOKASSA_SETTINGS, Settings
from pomogator.errors import (
    IdempotenceConflict,
    InvalidEmail,
    PaymentNotFound,
    PaymentProviderUnavailable,
    PaymentRejected,
)
from pomogator.tls import verify_location

T = TypeVar("T")

# YooKassa object ids are UUID-like; anything else must never reach a URL path ("../me" would).
REJECTED_STATUSES = frozenset({400, 401, 403, 405, 410, 415})
# The ``parameter`` of YooKassa's 400 answer to a receipt whose address it does not take: the person's typo, not
# the shop's settings.
RECEIPT_EMAIL_PARAMETERS = frozenset({"receipt.customer.email", "receipt.email"})
# The ``parameter`` of its 400 answer to an idempotence key sent before with other details.
IDEMPOTENCE_KEY_PARAMETER = "Idempotence-Key"


@dataclass(frozen=True, slots=True)
class YooKassaConfig:
    shop_id: str
    secret_key: str = field(repr=False)
    api_url: str = "https://api.yookassa.ru/v3"
    timeout: float = 15.0

    @classmethod
    def from_settings(cls, settings: Settings) -> YooKassaConfig:
        settings.require(*YOOKASSA_SETTINGS)
        assert settings.yookassa_shop_id is not None and settings.yookassa_secret_key is not None
        return cls(
            shop_id=settings.yookassa_shop_id,
            secret_key=settings.yookassa_secret_key.get_secret_value(),
            api_url=settings.yookassa_api_url.rstrip("/"),
            timeout=settings.yookassa_timeout,
        )


_lock = threading.Lock()
_timeout = 15.0


def _ensure_configured(config: YooKassaConfig) -> None:
    """Point the SDK's global configuration at ``config`` (in practice once per process)."""
    global _timeout
    with _lock:
        _timeout = config.timeout
        current = (Configuration.account_id, Configuration.secret_key, Configuration.api_url, Configuration.logger)
        if current == (config.shop_id, config.secret_key, config.api_url, None):
            return
        # No logger, ever: the SDK would log the request headers, Authorization included.
        Configuration.logger = None
        Configuration.configure(config.shop_id, config.secret_key, api_url=config.api_url)


class _TimeoutSession(requests.Session):
    """A session that gives every request a (connect, read) timeout unless one is passed."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", (self._timeout, self._timeout))
        return super().request(method, url, *args, **kwargs)


def _error_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_detail(response: requests.Response) -> str:
    body = _error_body(response)
    if not body:
        return f"HTTP {response.status_code}"
    parts = [str(body.get(key)) for key in ("code", "description", "parameter") if body.get(key)]
    return f"HTTP {response.status_code}: " + (" — ".join(parts) if parts else "no details")


class _ApiClient(ApiClient):  # type: ignore[misc]
    """The SDK's client with a timeout on its session and errors turned into our exceptions."""

    def get_session(self) -> requests.Session:
        # As the SDK's own, POST is retried while YooKassa answers 202 (still processing), now on http:// too;
        # unlike it, a refused connection is retried once and a read that timed out not at all, so the timeout
        # is a timeout (the caller retries later with the same idempotence key).
        session = _TimeoutSession(_timeout)
        retries = Retry(
            total=self.max_attempts,
            connect=1,
            read=0,
            other=0,
            backoff_factor=self.timeout / 1000,
            allowed_methods=["POST"],
            status_forcelist=[202],
        )
        adapter = HTTPAdapter(max_retries=retries)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def request(
        self,
        method: str = "",
        path: str = "",
        query_params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        if isinstance(body, RequestObject):
            body.validate()
            body = dict(body)
        request_headers = self.prepare_request_headers(headers)
        with self.get_session() as session:
            try:
                response = session.request(
                    method,
                    self.endpoint + path,
                    params=query_params,
                    headers=request_headers,
                    json=body,
                    # The process's authorities (``pomogator.tls``), not certifi's bundle alone.
                    verify=verify_location()
                    if self.configuration.verify in (None, True)
                    else self.configuration.verify,
                )
            except requests.RequestException as exc:
                raise PaymentProviderUnavailable(f"YooKassa did not answer ({type(exc).__name__}).") from None
        if response.status_code == 404:
            raise PaymentNotFound(f"YooKassa does not know this object ({_error_detail(response)}).")
        parameter = _error_body(response).get("parameter") if response.status_code == 400 else None
        if parameter in RECEIPT_EMAIL_PARAMETERS:
            raise InvalidEmail(f"YooKassa refused the receipt's email ({_error_detail(response)}).")
        if parameter == IDEMPOTENCE_KEY_PARAMETER:
            raise IdempotenceConflict(f"YooKassa refused the request ({_error_detail(response)}).")
        if response.status_code in REJECTED_STATUSES:
            raise PaymentRejected(f"YooKassa refused the request ({_error_detail(response)}).")
        if response.status_code != 200:
            raise PaymentProviderUnavailable(f"YooKassa answered with an error ({_error_detail(response)}).")
        try:
            return response.json()
        except ValueError:
            raise PaymentProviderUnavailable("YooKassa answered with something that is not JSON.") from None


class _Payment(SdkPayment):  # type: ignore[misc]
    def __init__(self) -> None:
        self.client = _ApiClient()


class _Refund(SdkRefund):  # type: ignore[misc]
    def __init__(self) -> None:
        self.client = _ApiClient()


def _bad(what: str) -> PaymentProviderUnavailable:
    return PaymentProviderUnavailable(f"YooKassa answered with an unexpected object ({what}).")


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise _bad(f"no {key}")
    return value


def _decimal(value: Any, what: str) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise _bad(f"{what} is not a number") from None


def _amount(data: Mapping[str, Any], key: str) -> tuple[Decimal, str]:
    raw = data.get(key)
    if not isinstance(raw, Mapping):
        raise _bad(f"no {key}")
    return _decimal(raw.get("value"), key), str(raw.get("currency") or "")


def _optional_mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def parse_payment(data: Mapping[str, Any]) -> RemotePayment:
    amount, currency = _amount(data, "amount")
    refunded = _optional_mapping(data, "refunded_amount")
    cancellation = _optional_mapping(data, "cancellation_details")
    confirmation = _optional_mapping(data, "confirmation")
    metadata = _optional_mapping(data, "metadata")
    url = confirmation.get("confirmation_url")
    return RemotePayment(
        id=_text(data, "id"),
        status=_text(data, "status"),
        amount=amount,
        currency=currency,
        metadata={str(k): str(v) for k, v in metadata.items()},
        paid=bool(data.get("paid")),
        confirmation_url=url if isinstance(url, str) and url else None,
        refunded_amount=_decimal(refunded.get("value", "0"), "refunded_amount"),
        cancellation_party=cancellation.get("party"),
        cancellation_reason=cancellation.get("reason"),
        raw=dict(data),
    )


def parse_refund(data: Mapping[str, Any]) -> RemoteRefund:
    amount, currency = _amount(data, "amount")
    return RemoteRefund(
        id=_text(data, "id"),
        payment_id=_text(data, "payment_id"),
        status=_text(data, "status"),
        amount=amount,
        currency=currency,
    )


def _receipt(spec: ReceiptSpec, amount: Decimal, currency: str) -> dict[str, Any]:
    receipt: dict[str, Any] = {
        "customer": {"email": spec.email},
        "items": [
            {
                "description": spec.description[:128],
                "quantity": "1",
                "amount": {"value": money(amount), "currency": currency},
                "vat_code": spec.vat_code,
                "payment_subject": "service",
                "payment_mode": "full_payment",
            }
        ],
    }
    if spec.tax_system_code is not None:
        receipt["tax_system_code"] = spec.tax_system_code
    return receipt


def _check_id(object_id: str) -> str:
    if not is_object_id(object_id):
        raise PaymentNotFound(f"{object_id[:80]!r} is not a YooKassa id.")
    return object_id


class YooKassaClient:
    """Async access to the YooKassa API through the SDK. Raises PaymentProviderUnavailable (and its subclass
    PaymentRejected), PaymentNotFound and InvalidEmail (a receipt's address refused); never anything from
    ``requests`` or the SDK."""

    def __init__(self, config: YooKassaConfig) -> None:
        self.config = config
        _ensure_configured(config)

    @classmethod
    def from_settings(cls, settings: Settings) -> YooKassaClient:
        return cls(YooKassaConfig.from_settings(settings))

    async def _run(self, fn: Callable[[], T]) -> T:
        def call() -> T:
            _ensure_configured(self.config)
            return fn()

        # The session timeout bounds each connect and read; this bounds the whole call, 202 retries included.
        # A call that runs past it keeps its thread until the session gives up, harmlessly.
        try:
            async with asyncio.timeout(self.config.timeout * 3):
                return await asyncio.to_thread(call)
        except TimeoutError:
            raise PaymentProviderUnavailable("YooKassa did not answer in time.") from None

    async def create_payment(
        self,
        *,
        amount: Decimal,
        currency: str,
        description: str,
        return_url: str,
        metadata: Mapping[str, str],
        idempotence_key: str,
        receipt: ReceiptSpec | None = None,
    ) -> RemotePayment:
        """Create a one-stage (``capture=True``) payment confirmed by redirect."""
        params: dict[str, Any] = {
            "amount": {"value": money(amount), "currency": currency},
            "capture": True,
            "confirmation": {"type": "redirect", "return_url": return_url},
            "description": description[:128],
            "metadata": dict(metadata),
        }
        if receipt is not None:
            params["receipt"] = _receipt(receipt, amount, currency)
        response = await self._run(lambda: _Payment.create(params, idempotence_key))
        return parse_payment(dict(response))

    async def get_payment(self, payment_id: str) -> RemotePayment:
        _check_id(payment_id)
        response = await self._run(lambda: _Payment.find_one(payment_id))
        return parse_payment(dict(response))

    async def create_refund(
        self,
        *,
        payment_id: str,
        amount: Decimal,
        currency: str,
        idempotence_key: str,
        description: str,
        receipt: ReceiptSpec | None = None,
    ) -> RemoteRefund:
        params: dict[str, Any] = {
            "payment_id": _check_id(payment_id),
            "amount": {"value": money(amount), "currency": currency},
            "description": description[:250],
        }
        if receipt is not None:
            params["receipt"] = _receipt(receipt, amount, currency)
        response = await self._run(lambda: _Refund.create(params, idempotence_key))
        return parse_refund(dict(response))

    async def get_refund(self, refund_id: str) -> RemoteRefund:
        _check_id(refund_id)
        response = await self._run(lambda: _Refund.find_one(refund_id))
        return parse_refund(dict(response))
