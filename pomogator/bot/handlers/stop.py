"""Stopping a streaming answer: the Stop button (edited messages) or Telegram's own button on a draft."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery, MessageGenerationStopped

from pomogator.bot import texts
from pomogator.bot.answer import StopRegistry
from pomogator.bot.callbacks import StopCallback
from pomogator.bot.middlewares import CallbackReply
from pomogator.bot.replies import chat_id_of

router = Router(name="stop")


@router.callback_query(StopCallback.filter(), flags={"account": False})
async def on_stop_button(
    query: CallbackQuery, callback_data: StopCallback, stops: StopRegistry, callback_reply: CallbackReply
) -> None:
    chat_id = chat_id_of(query)
    stopped = chat_id is not None and await stops.request_stop(chat_id, callback_data.answer)
    callback_reply.text = texts.STOPPING if stopped else texts.ALREADY_FINISHED


@router.stopped_message_generation()
async def on_draft_stopped(event: MessageGenerationStopped, stops: StopRegistry) -> None:
    await stops.request_stop(event.chat.id, event.draft_id)
