"""Any other text goes to the chosen model, with the role and the context.

Plain text outside any form is nearly every update a busy bot gets, so the ``make_router`` router is tried first,
before the command routers it could never be meant for. The ``make_late_router`` one comes after them: it answers
unknown commands, and text sent while a form waits that no form took.

A command is what Telegram marks as one (``is_command``): a text that merely starts with a slash, such as a path
("/etc/hosts — что это?"), is a question like any other.

A text that replies to a message, or quotes part of one, goes with that text before it: the model sees what
"this" in "translate this" is.
"""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import StateFilter
from aiogram.types import Message
from loguru import logger

from pomogator.bot import files_texts, texts
from pomogator.bot.answer import Answerer
from pomogator.bot.comments import ANSWERS_COMMENT, Comment
from pomogator.bot.filters import is_command
from pomogator.bot.middlewares.account import SENDER
from pomogator.bot.replies import replied_text
from pomogator.services.chat import ChatService
from pomogator.services.quoting import with_quote
from pomogator.services.users import Account, Person


def make_router() -> Router:
    router = Router(name="chat")
    router.message.register(on_forwards_in_part, StateFilter(None), F.text, ~F.func(is_command), has_left_out)
    router.message.register(
        on_text, StateFilter(None), F.text, ~F.func(is_command), flags={"account": SENDER, ANSWERS_COMMENT: True}
    )
    return router


def make_late_router() -> Router:
    router = Router(name="chat_late")
    router.message.register(on_unknown_command, is_command)
    router.message.register(on_forwards_in_part, F.text, has_left_out)
    router.message.register(on_text, F.text, flags={"account": SENDER, ANSWERS_COMMENT: True})
    return router


async def on_unknown_command(message: Message) -> None:
    await message.answer(texts.UNKNOWN_COMMAND)


def has_left_out(message: Message, left_out: list[str] | None = None) -> bool:
    """Forwarded texts that came with stickers, voice messages... (``gather.LEFT_OUT_KEY``)."""
    return bool(left_out)


async def on_forwards_in_part(
    message: Message, bot: Bot, account: Account, answerer: Answerer, chat: ChatService, left_out: list[str]
) -> None:
    """The texts are answered and what was left out is told, but only once the quota is known to allow the request:
    a person with none left gets the refusal alone, not "answering the rest" and then the refusal."""
    await chat.ensure_can_ask(account)
    try:
        await message.answer(files_texts.skipped_parts(left_out))
    except TelegramAPIError as exc:  # the texts are answered all the same
        logger.info("The notice of left-out forwards was not delivered: {}", exc.message)
    await answerer.reply(bot, message.chat, account, with_quote(message.text or "", replied_text(message)))


async def on_text(
    message: Message, bot: Bot, sender: Account | Person, answerer: Answerer, comment: Comment | None = None
) -> None:
    content = with_quote(message.text or "", replied_text(message))
    await answerer.reply(bot, message.chat, sender, content, comment=comment)
