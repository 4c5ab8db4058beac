"""Messages nobody else handles (stickers, voice, video, locations...): say what the bot understands.

``on_anything_else`` comes last and answers every kind the handlers before it did not take (a forwarded story, a
checklist, a game...), except service messages (a pinned message, an auto-delete timer, a chat background...):
those record what someone did rather than something said to the bot. Groups never get here (``PrivateChatsOnly``).

An edited message is not sent to the model again: the user is told so, once per message and at most once per
``EDIT_NOTICE_COOLDOWN`` seconds in a chat (edits do not pass the flood guard, which counts new messages only).
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

router = Router(name="fallback")

CONTENT_TYPES = {
    ContentType.STICKER,
    ContentType.VOICE,
    ContentType.AUDIO,
    ContentType.VIDEO,
    ContentType.VIDEO_NOTE,
    ContentType.ANIMATION,
    ContentType.LOCATION,
    ContentType.VENUE,
    ContentType.CONTACT,
    ContentType.POLL,
    ContentType.DICE,
}

# Strings rather than ContentType members: older aiogram versions the project allows lack some of them.
SERVICE_CONTENT_TYPES = frozenset(
    {
        # What aiogram cannot name may as well be a service message: better unanswered than answered wrongly.
        "unknown",
        "new_chat_members",
        "left_chat_member",
        "chat_owner_left",
        "chat_owner_changed",
        "new_chat_title",
        "new_chat_photo",
        "delete_chat_photo",
        "group_chat_created",
        "supergroup_chat_created",
        "channel_chat_created",
        "message_auto_delete_timer_changed",
        "migrate_to_chat_id",
        "migrate_from_chat_id",
        "pinned_message",
        "successful_payment",
        "refunded_payment",
        "users_shared",
        "user_shared",
        "chat_shared",
        "gift",
        "unique_gift",
        "gift_upgrade_sent",
        "connected_website",
        "write_access_allowed",
        "passport_data",
        "proximity_alert_triggered",
        "boost_added",
        "chat_background_set",
        "checklist_tasks_done",
        "checklist_tasks_added",
        "direct_message_price_changed",
        "forum_topic_created",
        "forum_topic_edited",
        "forum_topic_closed",
        "forum_topic_reopened",
        "general_forum_topic_hidden",
        "general_forum_topic_unhidden",
        "giveaway_created",
        "giveaway_completed",
        "managed_bot_created",
        "paid_message_price_changed",
        "poll_option_added",
        "poll_option_deleted",
        "suggested_post_approved",
        "suggested_post_approval_failed",
        "suggested_post_declined",
        "suggested_post_paid",
        "suggested_post_refunded",
        "video_chat_scheduled",
        "video_chat_started",
        "video_chat_ended",
        "video_chat_participants_invited",
        "web_app_data",
        "community_chat_added",
        "community_chat_removed",
        "community_chat_joined",
    }
)

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


edit_notices = EditNotices()


@router.message(F.content_type.in_(CONTENT_TYPES))
async def on_other(message: Message) -> None:
    await message.answer(texts.NOT_TEXT)


@router.message(~F.content_type.in_(SERVICE_CONTENT_TYPES))
async def on_anything_else(message: Message) -> None:
    await message.answer(texts.NOT_SUPPORTED)


# A shared live location is "edited" with every move: not something the user typed.
@router.edited_message(~F.location)
async def on_edited(message: Message) -> None:
    if edit_notices.should_tell(message.chat.id, message.message_id):
        await message.reply(texts.EDITS_NOT_SEEN, allow_sending_without_reply=True)
