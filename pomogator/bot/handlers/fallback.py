"""Messages nobody else handles (stickers, voice, video, locations...): say what the bot understands.

``on_other`` answers the kinds ``texts.NOT_TEXT`` names. ``on_anything_else`` comes last and answers every kind the
handlers before it did not take (a contact, a poll, a forwarded story, a checklist, a game...), except service messages
(a pinned message, an auto-delete timer, a chat background...): those record what someone did rather than something
said to the bot. Groups never get here (``PrivateChatsOnly``).

An edited message is not sent to the model again: the user is told so, once per message and at most once per
``EDIT_NOTICE_COOLDOWN`` seconds in a chat (edits do not pass the flood guard, which counts new messages only). Each
dispatcher keeps its own ``EditNotices`` (``edit_notices`` in its workflow data).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from aiogram import F, Router
from aiogram.enums import ContentType
from aiogram.types import Message

from pomogator.bot import texts
from pomogator.bot.filters import SERVICE_CONTENT_TYPES

# The kinds ``texts.NOT_TEXT`` names (voice messages, stickers, videos and video messages, locations). Every other
# kind (a contact, a poll, a dice, a venue, music, a GIF...) gets the general ``texts.NOT_SUPPORTED``: a list of kinds
# it is not would read as a wrong reply.
CONTENT_TYPES = {
    ContentType.STICKER,
    ContentType.VOICE,
    ContentType.VIDEO,
    ContentType.VIDEO_NOTE,
    ContentType.LOCATION,
}


EDIT_NOTICE_COOLDOWN = 60.0
"""Seconds after telling a chat about edits during which its other edits go unanswered."""
EDIT_NOTICE_MEMORY = 10_000
"""Messages (and chats) remembered; a restart, or another instance behind a webhook, may tell once more."""


K = TypeVar("K")
V = TypeVar("V")


class EditNotices:
    """Decides which edits are answered: a message's first edit, and at most one per ``cooldown`` seconds in a chat."""

    def __init__(
        self,
        cooldown: float = EDIT_NOTICE_COOLDOWN,
        memory: int = EDIT_NOTICE_MEMORY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cooldown = cooldown
        self.memory = memory
        self._clock = clock
        self._told: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._last: OrderedDict[int, float] = OrderedDict()

    def should_tell(self, chat_id: int, message_id: int) -> bool:
        """True when the edit of ``message_id`` is to be answered; it is then remembered as answered."""
        now = self._clock()
        key = (chat_id, message_id)
        last = self._last.get(chat_id)
        if key in self._told or (last is not None and now - last < self.cooldown):
            return False
        _remember(self._told, key, None, self.memory)
        _remember(self._last, chat_id, now, self.memory)
        return True


def _remember(memory: OrderedDict[K, V], key: K, value: V, size: int) -> None:
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > size:
        memory.popitem(last=False)


def make_router() -> Router:
    router = Router(name="fallback")
    router.message.register(on_other, F.content_type.in_(CONTENT_TYPES))
    router.message.register(on_anything_else, ~F.content_type.in_(SERVICE_CONTENT_TYPES))
    # A shared live location is "edited" with every move: not something the user typed.
    router.edited_message.register(on_edited, ~F.location)
    return router


async def on_other(message: Message) -> None:
    await message.answer(texts.NOT_TEXT)


async def on_anything_else(message: Message) -> None:
    await message.answer(texts.NOT_SUPPORTED)


async def on_edited(message: Message, edit_notices: EditNotices) -> None:
    if edit_notices.should_tell(message.chat.id, message.message_id):
        await message.reply(texts.EDITS_NOT_SEEN, allow_sending_without_reply=True)
