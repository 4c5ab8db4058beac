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
