"""/delete_me: erase the user's data after a confirmation (the same service as ``pomogator user delete``).

The prompt's buttons are flagged not to touch the account: a press on a prompt whose person was erased meanwhile
(through another prompt, say) must not create them anew. Every press takes the buttons away. Messages sent before
the erasure and still waiting for their turn are not handled afterwards (``pomogator.bot.erasures``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message, Update

from pomogator.bot import texts
from pomogator.bot.answer import StopRegistry
from pomogator.bot.callbacks import DeleteMeCallback
from pomogator.bot.erasures import ErasureMarks
from pomogator.bot.keyboards import make_delete_me_keyboard
from pomogator.bot.replies import chat_id_of, replace_text
from pomogator.config import Settings
from pomogator.errors import UserNotFound
from pomogator.services.users import Account, UserService
from pomogator.timeutil import utcnow

PROMPT_LIFETIME = timedelta(minutes=10)
"""A confirmation pressed later than this after its prompt is asked for again: premium may have been bought since,
and what the prompt said about it would be out of date."""
CLOCK_SLACK = timedelta(seconds=2)
"""How far a prompt's date (Telegram's clock, whole seconds) may lag behind an account created just before it
(ours)."""


def make_router() -> Router:
    router = Router(name="delete_me")
    router.message.register(on_delete_me, Command("delete_me", ignore_case=True))
    router.callback_query.register(on_confirm, DeleteMeCallback.filter(F.confirm), flags={"account": False})
    router.callback_query.register(on_cancel, DeleteMeCallback.filter(~F.confirm), flags={"account": False})
    return router


async def on_delete_me(message: Message, account: Account, settings: Settings) -> None:
    await message.answer(
        texts.delete_me_prompt(account.premium_until, settings.tz), reply_markup=make_delete_me_keyboard()
    )


async def on_confirm(
    query: CallbackQuery,
    bot: Bot,
    users: UserService,
    settings: Settings,
    state: FSMContext,
    stops: StopRegistry,
    erasures: ErasureMarks,
    event_update: Update,
) -> None:
    account = await _prompted_account(query, users)
    if account is None:
        await replace_text(bot, query, texts.DELETE_ME_OUTDATED)
        return
    chat_id = chat_id_of(query)
    if chat_id is not None and _expired(query):
        await replace_text(bot, query, texts.DELETE_ME_EXPIRED)
        await bot.send_message(
            chat_id, texts.delete_me_prompt(account.premium_until, settings.tz), reply_markup=make_delete_me_keyboard()
        )
        return
    if chat_id is not None:
        # Marked first: the messages queued behind the answer stopped next may take their turns at once, and one
        # that did before the erasure is done would create the account anew. Should the erasure fail, they are
        # dropped all the same (the person is told and may send them again).
        await erasures.mark(chat_id, event_update.update_id)
        # An answer streaming meanwhile stops too (whichever instance streams it); it is not stored for an erased
        # person.
        await stops.request_stop_chat(chat_id)
    erased = await users.delete(account.telegram_id)
    await state.clear()
    await replace_text(bot, query, texts.DELETE_ME_DONE if erased else texts.DELETE_ME_OUTDATED)


async def on_cancel(query: CallbackQuery, bot: Bot, users: UserService) -> None:
    account = await _prompted_account(query, users)
    await replace_text(bot, query, texts.DELETE_ME_CANCELLED if account is not None else texts.DELETE_ME_OUTDATED)


async def _prompted_account(query: CallbackQuery, users: UserService) -> Account | None:
    """The account the pressed prompt asked about; None when it was erased since the prompt was sent (and maybe
    created anew by a later message)."""
    try:
        account = await users.get(query.from_user.id)
    except UserNotFound:
        return None
    sent = _sent_at(query)
    if sent is not None and not _expired(query) and account.created_at > sent + CLOCK_SLACK:
        return None
    return account


def _sent_at(query: CallbackQuery) -> datetime | None:
    """When the pressed prompt was sent; None when it is too old for Telegram to show it to the bot."""
    return query.message.date if isinstance(query.message, Message) else None


def _expired(query: CallbackQuery) -> bool:
    """Whether the pressed prompt is older than ``PROMPT_LIFETIME`` (one too old to be read at all is)."""
    sent = _sent_at(query)
    return sent is None or utcnow() - sent > PROMPT_LIFETIME
