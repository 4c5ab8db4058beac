"""/delete_context: forget the conversation so far."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from pomogator.bot import texts
from pomogator.bot.callbacks import MenuAction, MenuCallback
from pomogator.bot.replies import chat_id_of
from pomogator.services.chat import ChatService
from pomogator.services.users import Account


def make_router() -> Router:
    router = Router(name="context")
    router.message.register(on_delete_context, Command("delete_context", ignore_case=True))
    router.callback_query.register(on_delete_context_button, MenuCallback.filter(F.action == MenuAction.delete_context))
    return router


async def clear_context(bot: Bot, chat_id: int, account: Account, chat: ChatService) -> None:
    await chat.clear_context(account.telegram_id)
    await bot.send_message(chat_id, texts.CONTEXT_CLEARED)


async def on_delete_context(message: Message, bot: Bot, account: Account, chat: ChatService) -> None:
    await clear_context(bot, message.chat.id, account, chat)


async def on_delete_context_button(query: CallbackQuery, bot: Bot, account: Account, chat: ChatService) -> None:
    chat_id = chat_id_of(query)
    if chat_id is not None:
        await clear_context(bot, chat_id, account, chat)
