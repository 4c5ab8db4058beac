"""Any other text goes to the chosen model, with the role and the context.

Plain text outside any form is nearly every update a busy bot gets, so ``router`` is tried first, before the
command routers it could never be meant for. ``late_router`` comes after them: it answers unknown commands, and text
sent while a form waits that no form took.

A command is what Telegram marks as one (``is_command``): a text that merely starts with a slash, such as a path
("/etc/hosts — что это?"), is a question like any other.

A text that replies to a message, or quotes part of one, goes with that text before it: the model sees what
"this" in "translate this" is.
"""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import StateFilter
from aiogram.types import Message

from pomogator.bot import texts
from pomogator.bot.answer import Answerer
from pomogator.bot.filters import is_command
from pomogator.bot.middlewares.account import SENDER
from pomogator.bot.replies import replied_text
from pomogator.services.quoting import with_quote
from pomogator.services.users import Account, Person

router = Router(name="chat")
late_router = Router(name="chat_late")


@late_router.message(is_command)
async def on_unknown_command(message: Message) -> None:
    await message.answer(texts.UNKNOWN_COMMAND)


@router.message(StateFilter(None), F.text, ~F.func(is_command), flags={"account": SENDER})
@late_router.message(F.text, flags={"account": SENDER})
async def on_text(message: Message, bot: Bot, sender: Account | Person, answerer: Answerer) -> None:
    await answerer.reply(bot, message.chat, sender, with_quote(message.text or "", replied_text(message)))
