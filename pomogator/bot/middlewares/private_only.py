"""Pomogator works in private chats; in a group it says so once, and again when someone there addresses the bot (a
command, a mention, a reply to it) after a quiet spell, and does nothing else.

A private chat's id is its person's: an update in one from anybody else is dropped. Telegram never sends one; a
forged one (a webhook secret guessed or leaked) would otherwise answer in the forger's chat from another person's
account, context and quota, since the account comes from the sender and the reply goes to the chat.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any, Protocol

from aiogram import BaseMiddleware, Bot
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Chat, Message, MessageEntity, TelegramObject, Update, User
from loguru import logger

from pomogator.bot import texts

# Group chats already told, remembered in memory (a restart may repeat the notice once).
NOTICED_MEMORY = 10_000
# A group member who addresses the bot is told again at most this often per group and instance: an answer to the
# one who asked, not a notice for every command a busy group sends.
ADDRESSED_COOLDOWN_S = 600.0


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

    def __init__(self, claim: GroupNoticeClaim | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        # Groups told, each with when this instance last told it (None: another instance did), for
        # ``ADDRESSED_COOLDOWN_S``.
        self._noticed: OrderedDict[int, float | None] = OrderedDict()
        self._telling: set[int] = set()
        self._claim = claim
        self._clock = clock

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        chat: Chat | None = data.get("event_chat")
        if chat is not None and chat.type == ChatType.PRIVATE:
            # Some updates have no sender (a draft's stop button pressed): nobody's account is at stake in them.
            sender: User | None = data.get("event_from_user")
            if sender is not None and sender.id != chat.id:
                logger.warning(
                    "Update in private chat {} from {} dropped: not from the chat's person", chat.id, sender.id
                )
                return None
            return await handler(event, data)
        if chat is None or not isinstance(event, Update):
            return await handler(event, data)
        bot: Bot = data["bot"]
        if event.callback_query is not None:
            await _quietly(event.callback_query.answer())
        elif event.message is not None and chat.id not in self._telling:
            if chat.id not in self._noticed:
                claim = self._claim
            elif self._cooled_down(chat.id) and _addressed(event.message, await _me(bot)):
                claim = None  # asked for: told again whatever other instances did before
            else:
                return None
            self._telling.add(chat.id)
            try:
                await self._tell(bot, event.message, claim)
            finally:
                self._telling.discard(chat.id)
        return None

    def _cooled_down(self, chat_id: int) -> bool:
        told = self._noticed.get(chat_id)
        return told is None or self._clock() - told >= ADDRESSED_COOLDOWN_S

    async def _tell(self, bot: Bot, message: Message, claim: GroupNoticeClaim | None) -> None:
        chat_id = message.chat.id
        if claim is not None:
            claimed = await claim(chat_id)
            if claimed is Claimed.TOLD:
                self._remember(chat_id, None)  # not asked again for every message of the group
            if claimed is not Claimed.TELL:
                return
        # In a forum, the topic the message came from; General's messages have none.
        thread = message.message_thread_id if message.is_topic_message else None
        try:
            me = await bot.me()
            await bot.send_message(chat_id, texts.private_only(me.username), message_thread_id=thread)
        except TelegramAPIError as exc:
            logger.info("Group notice not delivered: {}", exc.message)
            if claim is not None:
                await claim.failed(chat_id)
            return
        self._remember(chat_id, self._clock())
        if claim is not None:
            await claim.told(chat_id)

    def _remember(self, chat_id: int, told_at: float | None) -> None:
        self._noticed[chat_id] = told_at
        self._noticed.move_to_end(chat_id)
        if len(self._noticed) > NOTICED_MEMORY:
            self._noticed.popitem(last=False)


async def _me(bot: Bot) -> User | None:
    try:
        return await bot.me()  # asked once per process, then kept by aiogram
    except TelegramAPIError as exc:
        logger.info("Group notice not delivered: {}", exc.message)
        return None


def _addressed(message: Message, me: User | None) -> bool:
    """A command for this bot (``/model@ThisBot``, or a bare ``/model``, which Telegram's privacy mode delivers only
    when meant for this bot), a mention of it, or a reply to one of its messages."""
    if me is None:
        return False
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == me.id:
        return True
    text = message.text or message.caption or ""
    entities: list[MessageEntity] = message.entities or message.caption_entities or []
    username = (me.username or "").casefold()
    for entity in entities:
        written = entity.extract_from(text)
        if entity.type == "bot_command" and entity.offset == 0:
            _, at, addressee = written.partition("@")
            if not at or addressee.casefold() == username:
                return True
        elif entity.type == "mention" and username and written[1:].casefold() == username:
            return True
    return False


async def _quietly(call: Awaitable[Any]) -> None:
    try:
        await call
    except TelegramAPIError as exc:
        logger.info("Group notice not delivered: {}", exc.message)
