"""The Starlette app: ``GET /healthz``, ``POST /webhooks/yookassa`` when YooKassa is configured and, in webhook mode,
``POST /webhooks/telegram`` (see :mod:`pomogator.web.telegram_webhook`); and the background jobs.

Response codes are what YooKassa acts on: 200 stops its retries (done, or nothing we will ever act on), 5xx makes it
retry (our own failure, or the payment API is unreachable for the check), 403 for a sender outside YooKassa's
networks (logged rate-limited: anyone can send those as often as they like), 400 for a body that is not a
notification or a claim the payment API does not confirm.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict, cast

from loguru import logger
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pomogator.billing.models import is_object_id
from pomogator.config import Settings
from pomogator.container import Services, build_services
from pomogator.errors import (
    DatabaseUnavailable,
    PaymentNotFound,
    PaymentNotVerified,
    PaymentProviderUnavailable,
    PomogatorError,
)
from pomogator.heartbeat import keep_heartbeat
from pomogator.jobs import start_jobs
from pomogator.logs.ratelimit import RefusalLog
from pomogator.memory import keep_trimming
from pomogator.store.outage import outage_of
from pomogator.web.bodies import BodyTooLarge, read_body
from pomogator.web.network import client_address, in_networks
from pomogator.web.telegram_webhook import RETRY_AFTER_S, telegram_webhook

if TYPE_CHECKING:
    from pomogator.bot.webhook import WebhookUpdates

MAX_BODY_BYTES = 256 * 1024
HEALTH_TIMEOUT_S = 5.0


@dataclass(slots=True)
class Refusals:
    """The refused webhook calls, logged rate-limited: anyone can send them as often as they like."""

    yookassa: RefusalLog = field(default_factory=lambda: RefusalLog("YooKassa notifications from untrusted addresses"))
    telegram: RefusalLog = field(default_factory=lambda: RefusalLog("Telegram webhook calls without the right secret"))

    def flush(self) -> None:
        self.yookassa.flush()
        self.telegram.flush()


class AppState(TypedDict):
    services: Services
    # Telegram's updates in webhook mode; None otherwise.
    telegram: WebhookUpdates | None
    refusals: Refusals


def _services(request: Request[AppState]) -> Services:
    return request.state["services"]


def _parse_notification(body: bytes) -> tuple[str, str, str | None] | None:
    """(event, object id, the payment id a refund names) of a YooKassa notification body, or None when it is not
    one. Ids are checked here: an id of another form is never looked up, nor logged as it is written."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        return None
    if not isinstance(data, dict) or data.get("type") != "notification":
        return None
    event, obj = data.get("event"), data.get("object")
    if not isinstance(event, str) or not isinstance(obj, dict):
        return None
    object_id, payment_id = obj.get("id"), obj.get("payment_id")
    if not is_object_id(object_id):
        return None
    if payment_id is None:
        return event, object_id, None
    if not is_object_id(payment_id):
        return None
    return event, object_id, payment_id


async def yookassa_webhook(request: Request[AppState]) -> Response:
    services = _services(request)
    settings = services.settings
    sender = client_address(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        settings.trusted_proxies,
    )
    if sender is None or not in_networks(sender, settings.yookassa_networks):
        request.state["refusals"].yookassa.refused(
            "YooKassa notification from untrusted address {} refused", sender or "unknown"
        )
        return JSONResponse({"status": "forbidden"}, status_code=403)
    try:
        parsed = _parse_notification(await read_body(request, MAX_BODY_BYTES))
    except BodyTooLarge:
        return JSONResponse({"status": "too large"}, status_code=413)
    if parsed is None:
        logger.warning("Malformed YooKassa notification from {}", sender)
        return JSONResponse({"status": "malformed"}, status_code=400)
    event, object_id, payment_id = parsed
    with logger.contextualize(yookassa_event=event, yookassa_object=object_id):
        outcome = await services.billing.handle_notification(event, object_id, payment_id=payment_id)
        if outcome is not None:
            logger.info("YooKassa {} for {}: {}", event, object_id, "applied" if outcome.changed else "no change")
    return JSONResponse({"status": "ok"})


async def healthz(request: Request[AppState]) -> Response:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            await _services(request).database.ping()
    except Exception as exc:  # any failure to answer means unhealthy
        logger.warning("Health check: the database does not answer ({})", type(exc).__name__)
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})


# --- domain errors, translated once ---------------------------------------------------------------------------


async def _not_found(request: Request, exc: Exception) -> Response:
    # Not ours (or no longer known to YooKassa): 200, so YooKassa stops sending it.
    logger.warning("YooKassa notification ignored: {}", exc)
    return JSONResponse({"status": "ignored"})


async def _not_verified(request: Request, exc: Exception) -> Response:
    return JSONResponse({"status": "not verified"}, status_code=400)


async def _provider_unavailable(request: Request, exc: Exception) -> Response:
    logger.warning("YooKassa notification not checked, will be retried: {}", exc)
    return JSONResponse({"status": "retry later"}, status_code=503)


def _retry_later(path: str, outage: DatabaseUnavailable) -> Response:
    """A 503 for a request the database's outage kept from being served: YooKassa and Telegram send it again."""
    logger.warning("Request to {} not served, the database is unavailable: {}", path, outage.detail)
    return JSONResponse({"status": "retry later"}, status_code=503, headers={"Retry-After": RETRY_AFTER_S})


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    return _retry_later(request.url.path, cast(DatabaseUnavailable, exc))  # registered for DatabaseUnavailable only


async def _domain_error(request: Request, exc: Exception) -> Response:
    logger.error("Request to {} failed: {}", request.url.path, exc)
    return JSONResponse({"status": "error"}, status_code=500)


class InternalErrors:
    """Our own failures: logged once through loguru, answered with a bare 500 (503 when the database is
    unavailable) so YooKassa retries; no traceback reaches the client and nothing is re-raised into the server's
    logging."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            path = scope.get("path", "?")
            outage = outage_of(exc)
            if outage is not None:
                response = _retry_later(path, outage)
            else:
                logger.opt(exception=exc).error("Request to {} failed", path)
                response = JSONResponse({"status": "internal error"}, status_code=500)
            if not started:
                await response(scope, receive, send)


class OneLineStartupFailure:
    """A start-up that fails for a reason of ours (the database cannot be reached, a setting is missing) is not
    reported by uvicorn as Starlette's formatted traceback: ``serve`` reports it as every command does, in one line
    with exit code 1 (``app.state.startup_failures``, read by ``pomogator.web.server``)."""

    def __init__(self, app: ASGIApp, failures: list[PomogatorError]) -> None:
        self.app = app
        self.failures = failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def one_line_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and self.failures:
                message = {**message, "message": ""}
            await send(message)

        await self.app(scope, receive, one_line_send)


# --- the app ------------------------------------------------------------------------------------------------


def create_app(settings: Settings, *, services: Services | None = None) -> Starlette:
    """The web app. Its lifespan opens the services (or uses ``services``, owned by the caller) and runs in the
    background: the container heartbeat, the premium reminders (with a bot token), the check of payments whose
    notification has not come (with YooKassa) and the housekeeping (erased people's request counts, old log
    records).

    Without YooKassa (``Settings.billing_configured``) payments are off: ``/webhooks/yookassa`` is not served (404)
    and no payment is checked; that is logged once at start. In webhook mode (``POMOGATOR_TELEGRAM_WEBHOOK_SECRET``
    set) it also runs the bot: aiogram is imported only then.
    """

    startup_failures: list[PomogatorError] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[AppState]:
        async with contextlib.AsyncExitStack() as stack:
            try:
                opened = services if services is not None else await stack.enter_async_context(build_services(settings))
                telegram: WebhookUpdates | None = None
                if settings.webhook_mode:
                    from pomogator.bot.webhook import open_webhook

                    # Entered after the services, so it is left first: answers in progress finish before they close.
                    telegram = await stack.enter_async_context(open_webhook(settings, opened))
            except PomogatorError as exc:
                startup_failures.append(exc)
                raise
            tasks: list[asyncio.Task[None]] = []

            async def database_answers() -> bool:
                await opened.database.ping()
                return True

            tasks.append(asyncio.create_task(keep_heartbeat(database_answers)))
            tasks.append(asyncio.create_task(keep_trimming(settings.memory_trim_seconds)))
            tasks.extend(start_jobs(settings, opened))
            refusals = Refusals()
            try:
                yield {"services": opened, "telegram": telegram, "refusals": refusals}
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                refusals.flush()

    routes = [Route("/healthz", healthz, methods=["GET"])]
    if settings.billing_configured:
        routes.append(Route("/webhooks/yookassa", yookassa_webhook, methods=["POST"]))
    if settings.webhook_mode:
        routes.append(Route("/webhooks/telegram", telegram_webhook, methods=["POST"]))
    app = Starlette(
        routes=routes,
        middleware=[Middleware(OneLineStartupFailure, failures=startup_failures), Middleware(InternalErrors)],
        exception_handlers={
            PaymentNotFound: _not_found,
            PaymentNotVerified: _not_verified,
            PaymentProviderUnavailable: _provider_unavailable,
            DatabaseUnavailable: _database_unavailable,
            PomogatorError: _domain_error,
        },
        lifespan=lifespan,
    )
    app.state.startup_failures = startup_failures
    return app
