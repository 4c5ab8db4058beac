"""A pending form (the /role prompt, the receipt e-mail prompt) ends as soon as the user turns to something else.

A form takes the user's next message as its answer. A user who has moved on, to another command or a button, means
their next message as a question, and taking it as a role (or refusing it as an e-mail) would lose it. So every
handler of a message or a button press ends a pending form before it runs, except:

* the form's own input handlers, flagged ``flags={FORM: True}``;
* handlers that act beside the form, flagged ``flags={BESIDE_FORM: True}``: the Stop button and /stop, which act on an
  answer streaming meanwhile, and what only shows something (/help, /profile and their menu buttons): a look at
  the profile before typing a role is no turning away from it.

A form ended so tells it in place of its prompt, which loses its buttons: ``open_form``'s ``closed_text`` ("Ввод роли
отменён…"). Left as it was, the prompt would still ask for its answer, and the answer would go to the model. A handler
that opens the same form again (/role while the role prompt waits), flagged ``flags={REOPENS: RoleForm.waiting}``,
replaces the prompt rather than cancels it: the old one only loses its buttons, the new one asks.

Handlers that end a form themselves (its Cancel button, /cancel) are flagged too when they need what the form
noted (``close_form`` takes the buttons off the prompt, a button checks ``is_prompt_of``): unflagged, the form is over
before they run.

A form also ends when it was left alone for ``FORM_TTL_S`` (forms are opened with ``open_form``, which notes the
time). Typing a role or an e-mail takes minutes; a message that comes an hour later, with the prompt long out of
sight, is almost surely a question. The form's input handler then steps aside (``SkipHandler``) and the message goes
on to the handlers after it, as if no form waited: text to the model, a photo to the files handler.

Only a message sent after the prompt answers it. A message can be handled after a form opened although the user
sent it before: it waits in the chat's queue while an answer streams, and a button that opens a form does not queue.
Taking it as the answer would lose a question the user asked before they saw the prompt. So ``open_form`` notes the
prompt's message id; in a private chat the user's and the bot's messages share one increasing sequence of ids, so a
message with a smaller id was sent before the prompt. ``EarlierMessagesMiddleware`` hides the form from such a
message: it goes on as if no form waited (a question, a command), and the form keeps waiting for its answer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.dispatcher.flags import get_flag
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.types import Chat, Message, TelegramObject
from loguru import logger

FORM = "form"
"""The flag of a handler that takes a pending form's answer: ``flags={FORM: True}``."""

BESIDE_FORM = "beside_form"
"""The flag of a handler that leaves a pending form waiting (it acts on something else): ``{BESIDE_FORM: True}``."""

REOPENS = "reopens"
"""The flag of a handler that opens (or answers) the form it names, a ``State``: a pending one of that form is
replaced, not cancelled."""

FORM_TTL_S = 3600.0
_OPENED = "form_opened"
_PROMPT = "form_prompt"
_CLOSED = "form_closed"


async def open_form(state: FSMContext, form: State, *, prompt_id: int, closed_text: str, **data: Any) -> None:
    """Wait for ``form``'s answer to the prompt ``prompt_id`` (already sent), with ``data`` (it replaces whatever an
    earlier form left). ``closed_text`` (HTML) replaces the prompt should the user turn to something else."""
    await state.set_state(form)
    await state.set_data({**data, _OPENED: time.time(), _PROMPT: prompt_id, _CLOSED: closed_text})


async def is_prompt_of(state: FSMContext, form: State, message_id: int) -> bool:
    """Whether ``form`` waits and ``message_id`` is its prompt: a button on any other prompt is outdated."""
    if await state.get_state() != form.state:
        return False
    prompt = (await state.get_data()).get(_PROMPT)
    # A form opened by an older version has no prompt id: its prompt may be any.
    return not isinstance(prompt, int) or prompt == message_id


async def close_form(state: FSMContext, bot: Bot, chat_id: int) -> None:
    """End the form answered or cancelled by a message, and take the buttons off its prompt: a Cancel left there
    would say later that nothing changed."""
    prompt = (await state.get_data()).get(_PROMPT)
    await state.clear()
    if isinstance(prompt, int):
        await remove_buttons(bot, chat_id, prompt)


async def say_closed(bot: Bot, chat_id: int, message_id: int, text: str) -> None:
    """Show ``text`` in place of a prompt whose form the user turned away from, without its buttons."""
    try:
        await bot.edit_message_text(text, chat_id=chat_id, message_id=message_id, reply_markup=None)
    except TelegramAPIError as exc:
        # Deleted by the user, say: the command that ended the form is handled all the same.
        logger.info("The closed form's prompt is left as it was: {}", exc.message)


async def remove_buttons(bot: Bot, chat_id: int, message_id: int) -> None:
    """Take the buttons off a prompt whose form is over."""
    try:
        await bot.edit_message_reply_markup(chat_id=chat_id, message_id=message_id, reply_markup=None)
    except TelegramBadRequest as exc:
        # Deleted by the user, or without buttons already: nothing is left to press.
        logger.debug("The form's prompt keeps its buttons: {}", exc.message)


class EarlierMessagesMiddleware(BaseMiddleware):
    """Outer middleware on messages: a message sent before the form's prompt does not see the form (see the module
    docstring). It runs before the handlers' state filters, so no form handler matches such a message."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        state: FSMContext | None = data.get("state")
        if data.get("raw_state") is not None and state is not None and isinstance(event, Message):
            prompt = (await state.get_data()).get(_PROMPT)
            # A form opened by an older version has no prompt id: every message may answer it.
            if isinstance(prompt, int) and event.message_id < prompt:
                data["raw_state"] = None
        return await handler(event, data)


class FormMiddleware(BaseMiddleware):
    """Inner middleware on messages and button presses (see the module docstring)."""

    def __init__(self, ttl: float = FORM_TTL_S, clock: Callable[[], float] = time.time) -> None:
        self.ttl = ttl
        self._clock = clock

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        state: FSMContext | None = data.get("state")
        if data.get("raw_state") is None or state is None:
            return await handler(event, data)  # nearly every update: no form waits
        if get_flag(data, FORM):
            if await self._fresh(state):
                return await handler(event, data)
            await self._end(state, data)
            raise SkipHandler
        if not get_flag(data, BESIDE_FORM):
            reopens = get_flag(data, REOPENS)
            replaced = isinstance(reopens, State) and reopens.state == data.get("raw_state")
            await self._turned_away(state, data, replaced=replaced)
        return await handler(event, data)

    @staticmethod
    async def _end(state: FSMContext, data: dict[str, Any]) -> None:
        await state.clear()
        data["raw_state"] = None

    async def _turned_away(self, state: FSMContext, data: dict[str, Any], *, replaced: bool) -> None:
        """End the form the user turned away from, and say so in place of its prompt (``replaced``: a new prompt
        of the same form comes, and the old one only loses its buttons)."""
        form = await state.get_data()
        await self._end(state, data)
        prompt, closed = form.get(_PROMPT), form.get(_CLOSED)
        bot: Bot | None = data.get("bot")
        chat: Chat | None = data.get("event_chat")
        if not isinstance(prompt, int) or bot is None or chat is None:
            return
        if isinstance(closed, str) and not replaced:
            await say_closed(bot, chat.id, prompt, closed)
        else:  # replaced, or opened by an older version
            await remove_buttons(bot, chat.id, prompt)

    async def _fresh(self, state: FSMContext) -> bool:
        opened = (await state.get_data()).get(_OPENED)
        # A form opened by an older version has no time: it stays (shared storage forgets it within a week).
        return not isinstance(opened, int | float) or self._clock() - opened < self.ttl
