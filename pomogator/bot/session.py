"""The Bot API session: aiogram's aiohttp session, sending requests without files as JSON.

aiogram sends every request as a form: each parameter that is an object (a keyboard, entities, link preview options)
JSON-encoded on its own, then the whole form URL-encoded. The Bot API takes a JSON body as well; one encoding of the
whole request (with orjson) is about 0.1 ms less CPU per call, a few per cent of an answer's under load. Requests
that upload files go out as aiogram's multipart forms, as before.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.base import BaseSession
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType
from aiohttp import ClientError, ClientTimeout, TCPConnector

from pomogator.tls import ClientSSL

JSON_HEADERS = {"Content-Type": "application/json"}


class JsonBodySession(AiohttpSession):
    def __init__(self, *, ssl: ClientSSL, limit: int, **kwargs: Any) -> None:
        # Responses are parsed with orjson too: the Bot API's answers are JSON, an update batch of polling among them.
        BaseSession.__init__(self, json_loads=orjson.loads, **kwargs)
        # AiohttpSession's own __init__ would set these, with a TLS context of certifi's bundle made for the session
        # (~0.6 MiB that stays with the process once the context is replaced): ``ssl`` is the process's (tls.py).
        self._session = None
        self._connector_type = TCPConnector
        self._connector_init = {"ssl": ssl, "limit": limit, "ttl_dns_cache": 3600}
        self._should_reset_connector = True
        self._proxy = None

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 - aiogram's signature
    ) -> TelegramType:
        body = self.json_body(bot, method)
        if body is None:
            return await super().make_request(bot, method, timeout)
        session = await self.create_session()
        url = self.api.api_url(token=bot.token, method=method.__api_method__)
        # The rest is aiogram's own request, errors and response handling.
        try:
            seconds = self.timeout if timeout is None else timeout
            async with session.post(url, data=body, headers=JSON_HEADERS, timeout=ClientTimeout(total=seconds)) as resp:
                raw_result = await resp.text()
        except TimeoutError as e:
            raise TelegramNetworkError(method=method, message="Request timeout error") from e
        except ClientError as e:
            raise TelegramNetworkError(method=method, message=f"{type(e).__name__}: {e}") from e
        response = self.check_response(bot=bot, method=method, status_code=resp.status, content=raw_result)
        return cast(TelegramType, response.result)

    def json_body(self, bot: Bot, method: TelegramMethod[Any]) -> bytes | None:
        """The request as a JSON object, the values prepared as aiogram prepares a form's (defaults applied, empty
        values left out); None when it uploads files."""
        files: dict[str, Any] = {}
        body: dict[str, Any] = {}
        for key, value in method.model_dump(warnings=False).items():
            prepared = self.prepare_value(value, bot=bot, files=files, _dumps_json=False)
            if prepared is not None and prepared != "":
                body[key] = prepared
        if files:
            return None
        return orjson.dumps(body)
