"""/start (greeting and menu) and /help."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandStart
from aiogram.types import CallbackQuery, Message

from pomogator.bot import texts
from pomogator.bot.callbacks import MenuAction, MenuCallback
from pomogator.bot.keyboards import make_start_keyboard
from pomogator.bot.middlewares.forms import BESIDE_FORM
from pomogator.bot.replies import chat_id_of
from pomogator.config import Settings
from pomogator.services.users import Account


def make_router() -> Router:
    router = Router(name="start")
    router.message.register(on_start, CommandStart(ignore_case=True))
    # Help only shows something: a pending form (the role prompt) keeps waiting.
    router.message.register(on_help, Command("help", ignore_case=True), flags={BESIDE_FORM: True})
    router.callback_query.register(
        on_help_button, MenuCallback.filter(F.action == MenuAction.help), flags={BESIDE_FORM: True}
    )
    return router


async def send_help(bot: Bot, chat_id: int, settings: Settings) -> None:
    await bot.send_message(chat_id, texts.help_text(settings.support_contact, settings.tz))


async def on_start(message: Message, account: Account, settings: Settings) -> None:
    text = texts.start(account.first_name, account.model, settings.offer_url, settings.privacy_url)
    await message.answer(text, reply_markup=make_start_keyboard())


async def on_help(message: Message, bot: Bot, settings: Settings) -> None:
    await send_help(bot, message.chat.id, settings)


async def on_help_button(query: CallbackQuery, bot: Bot, settings: Settings) -> None:
    chat_id = chat_id_of(query)
    if chat_id is not None:
        await send_help(bot, chat_id, settings)
