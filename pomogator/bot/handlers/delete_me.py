"""/delete_me: erase the user's data after a confirmation (the same service as ``pomogator user delete``)."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from pomogator.bot import texts
from pomogator.bot.answer import StopRegistry
from pomogator.bot.callbacks import DeleteMeCallback
from pomogator.bot.keyboards import make_delete_me_keyboard
from pomogator.bot.replies import chat_id_of, replace_text
from pomogator.services.users import Account, UserService

router = Router(name="delete_me")


@router.message(Command("delete_me", ignore_case=True))
async def on_delete_me(message: Message) -> None:
    await message.answer(texts.DELETE_ME_PROMPT, reply_markup=make_delete_me_keyboard())


@router.callback_query(DeleteMeCallback.filter(F.confirm))
async def on_confirm(
    query: CallbackQuery, bot: Bot, account: Account, users: UserService, state: FSMContext, stops: StopRegistry
) -> None:
    # An answer streaming meanwhile stops too (whichever instance streams it); it is not stored for an erased person.
    chat_id = chat_id_of(query)
    if chat_id is not None:
        await stops.request_stop_chat(chat_id)
    await users.delete(account.telegram_id)
    await state.clear()
    await replace_text(bot, query, texts.DELETE_ME_DONE)


@router.callback_query(DeleteMeCallback.filter(~F.confirm))
async def on_cancel(query: CallbackQuery, bot: Bot) -> None:
    await replace_text(bot, query, texts.DELETE_ME_CANCELLED)
