"""Any other text goes to the chosen model, with the role and the context."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.types import Message

from pomogator.bot import texts
from pomogator.bot.answer import Answerer
from pomogator.services.users import Account

router = Router(name="chat")


@router.message(F.text.startswith("/"))
async def on_unknown_command(message: Message) -> None:
    await message.answer(texts.UNKNOWN_COMMAND)


@router.message(F.text)
async def on_text(message: Message, bot: Bot, account: Account, answerer: Answerer) -> None:
    await answerer.reply(bot, message.chat, account, message.text or "")
