"""Messages nobody else handles (stickers, voice, video, locations...): say what the bot understands."""

from __future__ import annotations

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


@router.message(F.content_type.in_(CONTENT_TYPES))
async def on_other(message: Message) -> None:
    await message.answer(texts.NOT_TEXT)
