"""Telegram's flood limits (429 with ``retry_after``) are waited out for every call, in the HTTP session.

Drafts and chat actions are not retried: a late one is worth nothing, and the answer renderer sends a fresher
draft when the wait is over. Profile calls (commands, descriptions) are not retried either: they are best-effort
and heavily rate-limited.

The same session middleware keeps aiogram's parsed response types alive: pydantic holds a parametrized generic such
as ``Response[Message]`` only weakly, so once the garbage collector had dropped it, the next call would build its
validation schema again (milliseconds of CPU, under load on a good share of calls).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import (
    GetMyCommands,
    GetMyDescription,
    GetMyShortDescription,
    SendChatAction,
    SendMessageDraft,
    SetMyCommands,
    SetMyDescription,
    SetMyShortDescription,
)
from aiogram.methods.base import Response, TelegramMethod, TelegramType
from loguru import logger

NOT_RETRIED: tuple[type[TelegramMethod[Any]], ...] = (
    SendMessageDraft,
    SendChatAction,
    GetMyCommands,
    GetMyDescription,
    GetMyShortDescription,
    SetMyCommands,
    SetMyDescription,
    SetMyShortDescription,
)
MAX_ATTEMPTS = 6


class RetryAfterMiddleware(BaseRequestMiddleware):
    def __init__(self, attempts: int = MAX_ATTEMPTS) -> None:
        self.attempts = attempts
        self._response_types: dict[type[TelegramMethod[Any]], type[Response[Any]]] = {}

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        if type(method) not in self._response_types:
            self._response_types[type(method)] = Response[method.__returning__]  # type: ignore[name-defined]
        attempt = 1
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if isinstance(method, NOT_RETRIED) or attempt >= self.attempts:
                    raise
                logger.info("Telegram flood limit on {}: waiting {}s", type(method).__name__, exc.retry_after)
                await asyncio.sleep(exc.retry_after)
                attempt += 1
