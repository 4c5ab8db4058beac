"""Every callback query is answered exactly once, after its handler, even when the handler fails."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiogram import BaseMiddleware
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, TelegramObject
from loguru import logger


@dataclass(slots=True)
class CallbackReply:
    """What the answer to the button press shows: handlers set ``text`` (a toast, or an alert)."""

    text: str | None = None
    alert: bool = False


class CallbackAnswerMiddleware(BaseMiddleware):
    """Outer middleware on callback queries: passes ``callback_reply`` and answers with it at the end."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, CallbackQuery):
            return await handler(event, data)
        reply = data["callback_reply"] = CallbackReply()
        try:
            return await handler(event, data)
        finally:
            await asyncio.shield(self._answer(event, reply))

    @staticmethod
    async def _answer(query: CallbackQuery, reply: CallbackReply) -> None:
        try:
            await query.answer(text=reply.text, show_alert=reply.alert or None)
        except TelegramAPIError as exc:
            # Too old, or answered elsewhere: the press was handled anyway.
            logger.debug("Callback answer failed: {}", exc.message)
