"""/role: the role given with the command ("/role Ты юрист"), or else the next text message, becomes the model's
role (system prompt).

The prompt is a form: any other command or button ends it (``pomogator.bot.middlewares.forms``) and the prompt then
says the input was cancelled; /help, /profile and their menu buttons leave it waiting, and /role replaces it. Its
Cancel button, /cancel and a typed "Отмена" end it too. A form answered, cancelled or replaced takes its buttons off
the prompt; a button on a prompt that no longer waits (pressed on a client that still shows it, or on a prompt left
for an hour) changes nothing.
"""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from pomogator.bot import texts
from pomogator.bot.callbacks import MenuAction, MenuCallback, RoleAction, RoleCallback
from pomogator.bot.filters import SERVICE_CONTENT_TYPES, is_cancel_word, is_command
from pomogator.bot.keyboards import make_role_keyboard
from pomogator.bot.middlewares import CallbackReply
from pomogator.bot.middlewares.forms import FORM, REOPENS, close_form, is_prompt_of, open_form
from pomogator.bot.replies import chat_id_of, replace_text
from pomogator.bot.states import RoleForm
from pomogator.config import Settings
from pomogator.errors import RoleTooLong
from pomogator.services.users import Account, UserService


def make_router() -> Router:
    router = Router(name="role")
    # A role prompt waiting meanwhile is replaced by the new one (or answered by "/role <text>"), not cancelled.
    router.message.register(on_role, Command("role", ignore_case=True), flags={REOPENS: RoleForm.waiting})
    router.callback_query.register(
        on_role_button, MenuCallback.filter(F.action == MenuAction.role), flags={REOPENS: RoleForm.waiting}
    )
    router.message.register(
        on_role_text, RoleForm.waiting, F.text, ~F.func(is_command), ~F.func(is_cancel_word), flags={FORM: True}
    )
    router.message.register(
        on_role_not_text, RoleForm.waiting, ~F.text, ~F.content_type.in_(SERVICE_CONTENT_TYPES), flags={FORM: True}
    )
    router.message.register(on_cancel_command, RoleForm.waiting, F.func(is_cancel_word), flags={FORM: True})
    router.message.register(
        on_cancel_command, RoleForm.waiting, Command("cancel", ignore_case=True), flags={FORM: True}
    )
    router.callback_query.register(on_cancel, RoleCallback.filter(F.action == RoleAction.cancel), flags={FORM: True})
    router.callback_query.register(on_delete, RoleCallback.filter(F.action == RoleAction.delete), flags={FORM: True})
    router.callback_query.register(on_outdated, RoleCallback.filter())
    return router


async def ask_for_role(bot: Bot, chat_id: int, account: Account, state: FSMContext, settings: Settings) -> None:
    prompt = await bot.send_message(
        chat_id,
        texts.role_prompt(account.role, settings.role_max_chars),
        reply_markup=make_role_keyboard(has_role=bool(account.role)),
    )
    await open_form(state, RoleForm.waiting, prompt_id=prompt.message_id, closed_text=texts.ROLE_INPUT_CLOSED)


async def on_role(
    message: Message,
    command: CommandObject,
    bot: Bot,
    account: Account,
    users: UserService,
    state: FSMContext,
    settings: Settings,
) -> None:
    if not (command.args or "").strip():
        await ask_for_role(bot, message.chat.id, account, state, settings)
        return
    try:
        await users.set_role(account.telegram_id, command.args)
    except RoleTooLong:
        # The refusal asks for a shorter role or the Cancel button: the prompt is where both are.
        await ask_for_role(bot, message.chat.id, account, state, settings)
        raise
    await message.answer(texts.ROLE_SAVED)


async def on_role_button(
    query: CallbackQuery, bot: Bot, account: Account, state: FSMContext, settings: Settings
) -> None:
    chat_id = chat_id_of(query)
    if chat_id is not None:
        await ask_for_role(bot, chat_id, account, state, settings)


async def on_role_text(message: Message, bot: Bot, account: Account, users: UserService, state: FSMContext) -> None:
    # RoleTooLong keeps the state: the user can send a shorter role or press Cancel.
    await users.set_role(account.telegram_id, message.text)
    await close_form(state, bot, message.chat.id)
    await message.answer(texts.ROLE_SAVED)


async def on_role_not_text(message: Message) -> None:
    await message.answer(texts.ROLE_NOT_TEXT)


async def on_cancel_command(message: Message, bot: Bot, state: FSMContext) -> None:
    await close_form(state, bot, message.chat.id)
    await message.answer(texts.ROLE_UNCHANGED)


# The prompt's buttons (FORM): they check that their prompt is the one waiting before the form ends.
async def on_cancel(query: CallbackQuery, bot: Bot, state: FSMContext, callback_reply: CallbackReply) -> None:
    if not await _waits(query, state, callback_reply):
        return
    await state.clear()
    await replace_text(bot, query, texts.ROLE_UNCHANGED)


async def on_delete(
    query: CallbackQuery,
    bot: Bot,
    account: Account,
    users: UserService,
    state: FSMContext,
    callback_reply: CallbackReply,
) -> None:
    if not await _waits(query, state, callback_reply):
        return
    await users.set_role(account.telegram_id, None)
    await state.clear()
    await replace_text(bot, query, texts.ROLE_DELETED)


async def on_outdated(query: CallbackQuery, callback_reply: CallbackReply) -> None:
    """A button of a prompt left alone for so long that the form ended (its handlers above stepped aside)."""
    callback_reply.text = texts.ROLE_PROMPT_OUTDATED


async def _waits(query: CallbackQuery, state: FSMContext, callback_reply: CallbackReply) -> bool:
    """Whether the pressed prompt is the role form's, still waiting; if not, the press is told it is outdated."""
    if query.message is not None and await is_prompt_of(state, RoleForm.waiting, query.message.message_id):
        return True
    callback_reply.text = texts.ROLE_PROMPT_OUTDATED
    return False
