"""Every callback query is answered exactly once: after its handler, even when the handler fails, or before its slow
work when the handler asks to (``CallbackReply.answer_now``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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
    answered: bool = False
    _query: CallbackQuery | None = field(default=None, repr=False)

    async def answer_now(self, text: str) -> None:
        """Answer the press at once with the toast ``text``, before work that may take long (a call to YooKassa):
        until answered, the button spins and invites another press. What is set afterwards is not shown."""
        if self.answered or self._query is None:
            return
        self.answered = True
        await _answer(self._query, text, alert=False)


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
        reply = data["callback_reply"] = CallbackReply(_query=event)
        try:
            return await handler(event, data)
        finally:
            if not reply.answered:
                reply.answered = True
                await asyncio.shield(_answer(event, reply.text, alert=reply.alert))


async def _answer(query: CallbackQuery, text: str | None, *, alert: bool) -> None:
    try:
        await query.answer(text=text, show_alert=alert or None)
    except TelegramAPIError as exc:
        # Too old, or answered elsewhere: the press was handled anyway.
        logger.debug("Callback answer failed: {}", exc.message)
