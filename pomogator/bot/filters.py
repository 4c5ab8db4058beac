"""Message filters the handlers share."""

from __future__ import annotations

from aiogram.enums import MessageEntityType
from aiogram.types import Message


def is_command(message: Message) -> bool:
    """Whether ``message`` is a command: Telegram marked its first word as one (a ``bot_command`` entity at 0).

    Telegram marks "/start", "/Help" or "/model@pomogator_bot", but not a text that merely starts with a slash,
    such as a path ("/etc/hosts") or "/r/python": that is a question like any other.
    """
    return any(entity.type == MessageEntityType.BOT_COMMAND and entity.offset == 0 for entity in message.entities or ())


CANCEL_WORDS = frozenset({"отмена", "отменить", "отмени", "не надо", "cancel"})


def is_cancel_word(message: Message) -> bool:
    """Whether ``message`` is just "Отмена" (or the like) typed instead of pressing the form's Cancel button: a form
    that takes any text (the role) must not take it as its answer."""
    return (message.text or "").strip().strip(".!").strip().lower() in CANCEL_WORDS


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
