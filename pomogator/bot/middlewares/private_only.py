"""Pomogator works in private chats; in a group it says so once and does nothing else."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Chat, TelegramObject, Update
from loguru import logger

from pomogator.bot import texts

# Group chats already told, remembered in memory (a restart may repeat the notice once).
NOTICED_MEMORY = 10_000


class PrivateChatsOnly(BaseMiddleware):
    """``claim(chat_id)``, when given, decides across instances whether this one tells the group (True once)."""

    def __init__(self, claim: Callable[[int], Awaitable[bool]] | None = None) -> None:
        self._noticed: OrderedDict[int, None] = OrderedDict()
        self._claim = claim

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        chat: Chat | None = data.get("event_chat")
        if chat is None or chat.type == ChatType.PRIVATE or not isinstance(event, Update):
            return await handler(event, data)
        bot: Bot = data["bot"]
        if event.callback_query is not None:
            await _quietly(event.callback_query.answer())
        elif event.message is not None and chat.id not in self._noticed:
            self._noticed[chat.id] = None
            if len(self._noticed) > NOTICED_MEMORY:
                self._noticed.popitem(last=False)
            if self._claim is not None and not await self._claim(chat.id):
                return None
            me = await bot.me()
            await _quietly(bot.send_message(chat.id, texts.private_only(me.username)))
        return None


async def _quietly(call: Awaitable[Any]) -> None:
    try:
        await call
    except TelegramAPIError as exc:
        logger.info("Group notice not delivered: {}", exc.message)
