"""/profile: model, role, today's requests, premium."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from pomogator.bot import texts
from pomogator.bot.callbacks import MenuAction, MenuCallback
from pomogator.bot.middlewares.forms import BESIDE_FORM
from pomogator.bot.replies import chat_id_of
from pomogator.config import Settings
from pomogator.services.users import Account, UserService


def make_router() -> Router:
    router = Router(name="profile")
    # The profile only shows something: a pending form (the role prompt) keeps waiting.
    router.message.register(on_profile, Command("profile", ignore_case=True), flags={BESIDE_FORM: True})
    router.callback_query.register(
        on_profile_button, MenuCallback.filter(F.action == MenuAction.profile), flags={BESIDE_FORM: True}
    )
    return router


async def send_profile(bot: Bot, chat_id: int, account: Account, users: UserService, settings: Settings) -> None:
    profile = await users.profile(account.telegram_id)
    await bot.send_message(chat_id, texts.profile(profile, settings.tz, premium_on_sale=settings.billing_configured))


async def on_profile(message: Message, bot: Bot, account: Account, users: UserService, settings: Settings) -> None:
    await send_profile(bot, message.chat.id, account, users, settings)


async def on_profile_button(
    query: CallbackQuery, bot: Bot, account: Account, users: UserService, settings: Settings
) -> None:
    chat_id = chat_id_of(query)
    if chat_id is not None:
        await send_profile(bot, chat_id, account, users, settings)
