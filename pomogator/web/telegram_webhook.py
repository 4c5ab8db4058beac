"""``POST /webhooks/telegram``: Telegram's updates in webhook mode (``POMOGATOR_TELEGRAM_WEBHOOK_SECRET`` set).

Telegram sends the secret given to ``setWebhook`` in ``X-Telegram-Bot-Api-Secret-Token``; anything without it is
refused with 403, and logged rate-limited (:mod:`pomogator.logs.ratelimit`). A valid update is answered 200 at once
and handled in the background; while the app shuts down, and while the database has been unreachable for longer than
the reconnect wait, updates are refused with 503, so Telegram delivers them again (to another instance, after the
restart, once the database is back).
This module does not import aiogram; ``pomogator.bot.webhook`` does, and the app loads it only in webhook mode.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from loguru import logger
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pomogator.web.bodies import BodyTooLarge, read_body
from pomogator.web.network import client_address

if TYPE_CHECKING:
    from pomogator.web.app import AppState

SECRET_HEADER = "x-telegram-bot-api-secret-token"
# Updates carry at most a 4096-character text or caption and its entities; this is far above any real one.
MAX_UPDATE_BYTES = 1024 * 1024
RETRY_AFTER_S = "5"


def secret_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so the response time tells nothing about how much of a guess was right."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def telegram_webhook(request: Request[AppState]) -> Response:
    updates = request.state["telegram"]
    services = request.state["services"]
    secret = services.settings.telegram_webhook_secret
    if updates is None or secret is None:
        return JSONResponse({"status": "not found"}, status_code=404)
    if not secret_matches(request.headers.get(SECRET_HEADER), secret.get_secret_value()):
        sender = client_address(
            request.client.host if request.client else None,
            request.headers.getlist("x-forwarded-for"),
            services.settings.trusted_proxies,
        )
        request.state["refusals"].telegram.refused(
            "Telegram webhook call without the right secret from {} refused", sender or "unknown"
        )
        return JSONResponse({"status": "forbidden"}, status_code=403)
    if not updates.accepting:
        return JSONResponse({"status": "shutting down"}, status_code=503, headers={"Retry-After": RETRY_AFTER_S})
    if not await services.database.reachable():
        # Taken now, the update could only be answered with "try again later"; refused, Telegram keeps it and
        # delivers it again, to be answered once the database is back.
        logger.warning("Telegram update refused for now, the database is unavailable")
        return JSONResponse({"status": "retry later"}, status_code=503, headers={"Retry-After": RETRY_AFTER_S})
    try:
        body = await read_body(request, MAX_UPDATE_BYTES)
    except BodyTooLarge:
        return JSONResponse({"status": "too large"}, status_code=413)

    from pomogator.bot.webhook import NotAnUpdate  # loaded already: the app opened WebhookUpdates at start

    try:
        await updates.accept(body)
    except NotAnUpdate:
        logger.warning("Telegram webhook call with a body that is not an update")
        return JSONResponse({"status": "malformed"}, status_code=400)
    return Response(status_code=200)
