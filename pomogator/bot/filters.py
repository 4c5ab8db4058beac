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
