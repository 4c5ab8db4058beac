"""/billing until payments exist: premium is coming. ``handlers/billing.py`` replaces this module."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from pomogator.bot import texts
from pomogator.bot.callbacks import MenuAction, MenuCallback
from pomogator.bot.replies import chat_id_of
from pomogator.config import Settings

router = Router(name="billing_soon")


@router.message(Command("billing"))
async def on_billing(message: Message, bot: Bot, settings: Settings) -> None:
    await bot.send_message(message.chat.id, texts.billing_soon(settings.support_contact))


@router.callback_query(MenuCallback.filter(F.action == MenuAction.billing))
async def on_billing_button(query: CallbackQuery, bot: Bot, settings: Settings) -> None:
    chat_id = chat_id_of(query)
    if chat_id is not None:
        await bot.send_message(chat_id, texts.billing_soon(settings.support_contact))
