"""/model: the models menu, choosing a model, closing the menu."""

from __future__ import annotations

import dataclasses

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from pomogator.bot import texts
from pomogator.bot.callbacks import MenuAction, MenuCallback, ModelAction, ModelCallback
from pomogator.bot.keyboards import make_model_keyboard
from pomogator.bot.middlewares import CallbackReply
from pomogator.bot.replies import chat_id_of, replace_text
from pomogator.config import Settings
from pomogator.errors import PremiumRequired
from pomogator.llm.catalog import Catalog
from pomogator.services.users import Account, UserService


def make_router() -> Router:
    router = Router(name="model")
    router.message.register(on_model, Command("model", ignore_case=True))
    router.callback_query.register(on_model_button, MenuCallback.filter(F.action == MenuAction.model))
    router.callback_query.register(on_pick, ModelCallback.filter(F.action == ModelAction.pick))
    router.callback_query.register(on_exit, ModelCallback.filter(F.action == ModelAction.exit))
    return router


async def send_model_menu(bot: Bot, chat_id: int, account: Account, catalog: Catalog, settings: Settings) -> None:
    await bot.send_message(
        chat_id,
        texts.model_menu(catalog, account, premium_on_sale=settings.billing_configured),
        reply_markup=make_model_keyboard(catalog, account, premium_on_sale=settings.billing_configured),
    )


async def on_model(message: Message, bot: Bot, account: Account, catalog: Catalog, settings: Settings) -> None:
    await send_model_menu(bot, message.chat.id, account, catalog, settings)


async def on_model_button(
    query: CallbackQuery, bot: Bot, account: Account, catalog: Catalog, settings: Settings
) -> None:
    chat_id = chat_id_of(query)
    if chat_id is not None:
        await send_model_menu(bot, chat_id, account, catalog, settings)


async def on_pick(
    query: CallbackQuery,
    callback_data: ModelCallback,
    bot: Bot,
    account: Account,
    users: UserService,
    catalog: Catalog,
    settings: Settings,
    callback_reply: CallbackReply,
) -> None:
    picked = catalog.by_key(callback_data.key)
    try:
        model = await users.set_model(account.telegram_id, picked.id)
    except PremiumRequired:
        # The menu may be older than the end of premium (or a refund, an admin's revoke) and still show the model as
        # chosen, or unlocked: it is drawn anew from the account as it is now, under an alert that refuses the pick.
        callback_reply.text = texts.model_locked(picked, premium_on_sale=settings.billing_configured)
        callback_reply.alert = True
        shown = await users.get(account.telegram_id)
    else:
        callback_reply.text = texts.model_chosen(model)
        shown = dataclasses.replace(account, model=model)
    menu = texts.model_menu(catalog, shown, premium_on_sale=settings.billing_configured)
    markup = make_model_keyboard(catalog, shown, premium_on_sale=settings.billing_configured)
    await replace_text(bot, query, menu, markup)


async def on_exit(query: CallbackQuery, bot: Bot, callback_reply: CallbackReply) -> None:
    chat_id = chat_id_of(query)
    if chat_id is None or query.message is None:
        return
    callback_reply.text = texts.MODEL_MENU_CLOSED
    try:
        await bot.delete_message(chat_id, query.message.message_id)
    except TelegramBadRequest:
        # Too old to delete (48 hours): at least take the buttons away.
        await replace_text(bot, query, texts.MODEL_MENU_CLOSED)
