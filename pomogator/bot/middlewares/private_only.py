"""Pomogator works in private chats; in a group it says so once and does nothing else."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any, Protocol

from aiogram import BaseMiddleware, Bot
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Chat, Message, TelegramObject, Update
from loguru import logger

from pomogator.bot import texts

# Group chats already told, remembered in memory (a restart may repeat the notice once).
NOTICED_MEMORY = 10_000


class Claimed(Enum):
    TELL = "tell"
    """No instance has told the group and none is telling it now: this one is to."""
    TOLD = "told"
    """An instance told it: nobody tells it again."""
    BUSY = "busy"
    """Another instance is telling it now; should that fail, a later message tries again."""


class GroupNoticeClaim(Protocol):
    """Decides across instances which one tells a group (``pomogator.bot.shared``)."""

    async def __call__(self, chat_id: int) -> Claimed:
        """Whether this instance is to tell the group."""

    async def told(self, chat_id: int) -> None:
        """The notice went out: no instance tells the group again."""

    async def failed(self, chat_id: int) -> None:
        """The notice did not go out: the group's next message may try again."""


class PrivateChatsOnly(BaseMiddleware):
    """``claim``, when given, decides across instances whether this one tells the group.

    A group counts as told once the notice went out: in a forum it goes to the topic written in (General may be
    closed), and when Telegram refuses it anyway the group's next message tries again.
    """

    def __init__(self, claim: GroupNoticeClaim | None = None) -> None:
        self._noticed: OrderedDict[int, None] = OrderedDict()
        self._telling: set[int] = set()
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
        elif event.message is not None and chat.id not in self._noticed and chat.id not in self._telling:
            self._telling.add(chat.id)
            try:
                await self._tell(bot, event.message)
            finally:
                self._telling.discard(chat.id)
        return None

    async def _tell(self, bot: Bot, message: Message) -> None:
        chat_id = message.chat.id
        if self._claim is not None:
            claimed = await self._claim(chat_id)
            if claimed is Claimed.TOLD:
                self._remember(chat_id)  # not asked again for every message of the group
            if claimed is not Claimed.TELL:
                return
        # In a forum, the topic the message came from; General's messages have none.
        thread = message.message_thread_id if message.is_topic_message else None
        try:
            me = await bot.me()
            await bot.send_message(chat_id, texts.private_only(me.username), message_thread_id=thread)
        except TelegramAPIError as exc:
            logger.info("Group notice not delivered: {}", exc.message)
            if self._claim is not None:
                await self._claim.failed(chat_id)
            return
        self._remember(chat_id)
        if self._claim is not None:
            await self._claim.told(chat_id)

    def _remember(self, chat_id: int) -> None:
        self._noticed[chat_id] = None
        if len(self._noticed) > NOTICED_MEMORY:
            self._noticed.popitem(last=False)


async def _quietly(call: Awaitable[Any]) -> None:
    try:
        await call
    except TelegramAPIError as exc:
        logger.info("Group notice not delivered: {}", exc.message)
