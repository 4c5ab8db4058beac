"""/cancel when no form waits: the forms' own /cancel handlers (role, billing) come first and end theirs."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from pomogator.bot import texts


def make_router() -> Router:
    router = Router(name="cancel")
    router.message.register(on_nothing_to_cancel, Command("cancel", ignore_case=True), flags={"account": False})
    return router


async def on_nothing_to_cancel(message: Message) -> None:
    await message.answer(texts.NOTHING_TO_CANCEL)
