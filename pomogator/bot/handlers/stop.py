"""Stopping a streaming answer: /stop, the Stop button (edited messages) or Telegram's own button on a draft.

They act beside a pending form (``BESIDE_FORM``): stopping an answer is not turning away from the form. /stop does
not wait for the chat's turn (``pomogator.bot.middlewares.chat_order.UNQUEUED_COMMANDS``).
"""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message, MessageGenerationStopped

from pomogator.bot import texts
from pomogator.bot.answer import StopRegistry
from pomogator.bot.callbacks import StopCallback
from pomogator.bot.middlewares import CallbackReply
from pomogator.bot.middlewares.chat_order import STOP_COMMAND
from pomogator.bot.middlewares.forms import BESIDE_FORM
from pomogator.bot.replies import chat_id_of


def make_router() -> Router:
    router = Router(name="stop")
    router.message.register(
        on_stop_command, Command(STOP_COMMAND, ignore_case=True), flags={"account": False, BESIDE_FORM: True}
    )
    router.callback_query.register(on_stop_button, StopCallback.filter(), flags={"account": False, BESIDE_FORM: True})
    router.stopped_message_generation.register(on_draft_stopped)
    return router


async def on_stop_command(message: Message, stops: StopRegistry) -> None:
    # A stopped answer ends with its own mark ("Ответ остановлен"), one stopped before it started (a file being read)
    # says so in its place: a reply here would only come before them.
    if not await stops.request_stop_chat(message.chat.id):
        await message.answer(texts.NOTHING_TO_STOP)


async def on_stop_button(
    query: CallbackQuery, callback_data: StopCallback, stops: StopRegistry, callback_reply: CallbackReply
) -> None:
    chat_id = chat_id_of(query)
    stopped = chat_id is not None and await stops.request_stop(chat_id, callback_data.answer)
    callback_reply.text = texts.STOPPING if stopped else texts.ALREADY_FINISHED


async def on_draft_stopped(event: MessageGenerationStopped, stops: StopRegistry) -> None:
    await stops.request_stop(event.chat.id, event.draft_id)
