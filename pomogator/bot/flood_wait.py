"""Telegram's flood limits (429 with ``retry_after``) are waited out for every call, in the HTTP session, up to
``MAX_WAIT_S`` in all per call. A limit that lasts longer fails the call at once with ``FloodWaitTooLong`` (a
``TelegramRetryAfter``): the error middleware tells the user to try again later and the chat's turn is released, rather
than holding it for the minutes or hours Telegram may ask for.

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
# Telegram's limits on a private chat (about a message a second) ask for waits of a few seconds, and a minute covers
# them with room to spare, so answers still arrive whole. A longer wait means the bot as a whole is limited: the user
# would see nothing for minutes while their next messages queue behind this one, so the call is given up.
MAX_WAIT_S = 60.0


class FloodWaitTooLong(TelegramRetryAfter):
    """Telegram's flood limit lasts longer than one call may wait (``MAX_WAIT_S`` in all): the call is given up."""

    def __init__(self, flood: TelegramRetryAfter, waited: float, max_wait: float) -> None:
        super().__init__(flood.method, "", flood.retry_after)
        self.message = f"{flood.message}\nGiven up after waiting {waited:.0f}s: a call waits {max_wait:.0f}s at most."
        self.waited = waited


class RetryAfterMiddleware(BaseRequestMiddleware):
    def __init__(self, attempts: int = MAX_ATTEMPTS, max_wait: float = MAX_WAIT_S) -> None:
        self.attempts = attempts
        self.max_wait = max_wait
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
        waited = 0.0
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if isinstance(method, NOT_RETRIED):
                    raise
                # A wait that would go past the budget is not started: the call would fail after it anyway.
                if attempt >= self.attempts or waited + exc.retry_after > self.max_wait:
                    raise FloodWaitTooLong(exc, waited, self.max_wait) from exc
                logger.info("Telegram flood limit on {}: waiting {}s", type(method).__name__, exc.retry_after)
                await asyncio.sleep(exc.retry_after)
                waited += exc.retry_after
                attempt += 1
