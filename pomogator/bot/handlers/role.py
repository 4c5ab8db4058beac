"""/role: the next text message becomes the model's role (system prompt).

The prompt is a form: any other command or button ends it (``pomogator.bot.middlewares.forms``), and so do its
Cancel button, /cancel and a typed "Отмена".
"""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from pomogator.bot import texts
from pomogator.bot.callbacks import MenuAction, MenuCallback, RoleAction, RoleCallback
from pomogator.bot.filters import SERVICE_CONTENT_TYPES, is_cancel_word, is_command
from pomogator.bot.keyboards import make_role_keyboard
from pomogator.bot.middlewares.forms import FORM, open_form
from pomogator.bot.replies import chat_id_of, replace_text
from pomogator.bot.states import RoleForm
from pomogator.config import Settings
from pomogator.services.users import Account, UserService

router = Router(name="role")


async def ask_for_role(bot: Bot, chat_id: int, account: Account, state: FSMContext, settings: Settings) -> None:
    prompt = await bot.send_message(
        chat_id, texts.role_prompt(account.role, settings.role_max_chars), reply_markup=make_role_keyboard()
    )
    await open_form(state, RoleForm.waiting, prompt_id=prompt.message_id)


@router.message(Command("role", ignore_case=True))
async def on_role(message: Message, bot: Bot, account: Account, state: FSMContext, settings: Settings) -> None:
    await ask_for_role(bot, message.chat.id, account, state, settings)


@router.callback_query(MenuCallback.filter(F.action == MenuAction.role))
async def on_role_button(
    query: CallbackQuery, bot: Bot, account: Account, state: FSMContext, settings: Settings
) -> None:
    chat_id = chat_id_of(query)
    if chat_id is not None:
        await ask_for_role(bot, chat_id, account, state, settings)


@router.message(RoleForm.waiting, F.text, ~F.func(is_command), ~F.func(is_cancel_word), flags={FORM: True})
async def on_role_text(message: Message, account: Account, users: UserService, state: FSMContext) -> None:
    # RoleTooLong keeps the state: the user can send a shorter role or press Cancel.
    await users.set_role(account.telegram_id, message.text)
    await state.clear()
    await message.answer(texts.ROLE_SAVED)


@router.message(RoleForm.waiting, ~F.text, ~F.content_type.in_(SERVICE_CONTENT_TYPES), flags={FORM: True})
async def on_role_not_text(message: Message) -> None:
    await message.answer(texts.ROLE_NOT_TEXT)


@router.message(RoleForm.waiting, Command("cancel", ignore_case=True))
@router.message(RoleForm.waiting, F.func(is_cancel_word), flags={FORM: True})
async def on_cancel_command(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(texts.ROLE_UNCHANGED)


@router.callback_query(RoleCallback.filter(F.action == RoleAction.cancel))
async def on_cancel(query: CallbackQuery, bot: Bot, state: FSMContext) -> None:
    await state.clear()
    await replace_text(bot, query, texts.ROLE_UNCHANGED)


@router.callback_query(RoleCallback.filter(F.action == RoleAction.delete))
async def on_delete(query: CallbackQuery, bot: Bot, account: Account, users: UserService, state: FSMContext) -> None:
    await users.set_role(account.telegram_id, None)
    await state.clear()
    await replace_text(bot, query, texts.ROLE_DELETED)
