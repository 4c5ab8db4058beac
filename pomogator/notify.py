"""A minimal Telegram Bot API client for processes that must not import aiogram (web, CLI, log alerts).

``TelegramNotifier`` only sends plain messages: payment confirmations, reminders and admin alerts. ``BotApi`` is
the one HTTP client under it and under the ``pomogator bot`` commands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Self

from loguru import logger

from pomogator.logs.records import about
from pomogator.tls import ssl_context

if TYPE_CHECKING:
    import httpx

# httpx is imported when the first call is made: importing it also loads its command-line tool's dependencies
# (click, rich, pygments), a few MiB that a process which never sends a notice does not need.

MAX_FLOOD_WAIT_S = 30.0
FORBIDDEN = 403


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    description: str = ""
    error_code: int | None = None
    """Telegram's ``error_code`` when it answered with an error; None when sent or when Telegram was not reached."""

    @property
    def blocked(self) -> bool:
        """The recipient takes no messages from the bot (blocked it, or deleted their account): sending again would
        meet the same answer."""
        return self.error_code == FORBIDDEN


class BotApi:
    """Bot API calls over httpx. Servers are verified as the process's other clients verify them
    (``pomogator.tls``), and the calls go straight to ``api_url``: ``HTTPS_PROXY`` and the other proxy variables
    are the model client's alone, as for the bot's own Bot API client (aiogram's)."""

    def __init__(self, api_url: str, token: str, *, timeout: float) -> None:
        self._base = f"{api_url.rstrip('/')}/bot{token}/"
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def post(self, method: str, params: Mapping[str, object]) -> httpx.Response:
        """POST ``params`` as JSON to ``method``; raises ``httpx.HTTPError`` when no answer comes."""
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(timeout=self._timeout, verify=ssl_context(), trust_env=False)
        return await self._client.post(self._base + method, json=params)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class TelegramNotifier:
    def __init__(self, api_url: str, token: str, *, timeout: float = 10.0, pause: float = 1.0) -> None:
        self._api = BotApi(api_url, token, timeout=timeout)
        self._pause = pause  # between attempts after a failed request

    async def close(self) -> None:
        await self._api.close()

    async def send(self, chat_id: int, text: str, *, html: bool = False, attempts: int = 3) -> SendResult:
        """Send a message; waits out 429 ``retry_after`` (bounded). Never raises: a failed notice is logged."""
        payload: dict[str, object] = {"chat_id": chat_id, "text": text, "link_preview_options": {"is_disabled": True}}
        if html:
            payload["parse_mode"] = "HTML"
        import httpx

        description = ""
        error_code: int | None = None
        for _ in range(attempts):
            try:
                response = await self._api.post("sendMessage", payload)
                body = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                description = type(exc).__name__
                await asyncio.sleep(self._pause)
                continue
            if not isinstance(body, dict):
                # Not the Bot API's answer (a proxy's error page in JSON, say): tried again like a failed request.
                description = f"HTTP {response.status_code}, not a Bot API answer"
                await asyncio.sleep(self._pause)
                continue
            if body.get("ok"):
                return SendResult(True)
            description = str(body.get("description", response.status_code))
            code = body.get("error_code", response.status_code)
            error_code = code if isinstance(code, int) else response.status_code
            parameters = body.get("parameters")
            retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
            if response.status_code == 429 and isinstance(retry_after, int | float):
                await asyncio.sleep(min(float(retry_after), MAX_FLOOD_WAIT_S))
                continue
            break
        logger.bind(**about(chat_id)).warning("Telegram notice to {} not delivered: {}", chat_id, description)
        return SendResult(False, description, error_code)
