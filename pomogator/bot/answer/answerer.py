"""The last step of the message path: ask the model and stream its answer into the chat."""

from __future__ import annotations

import secrets

from aiogram import Bot
from aiogram.enums import ChatType
from aiogram.types import Chat

from pomogator.bot.answer.output import ChatOutput
from pomogator.bot.answer.renderer import UPDATE_INTERVAL, AnswerRenderer
from pomogator.bot.answer.stops import StopRegistry
from pomogator.services.chat import ChatService, Reply
from pomogator.services.conversations import Content
from pomogator.services.users import Account

# Chats where Telegram refused a draft are remembered (up to this many) and answered with edits.
NO_DRAFTS_MEMORY = 10_000
DRAFT_ID_LIMIT = 2**31 - 1


class Answerer:
    def __init__(self, chat: ChatService, stops: StopRegistry, *, interval: float = UPDATE_INTERVAL) -> None:
        self.chat = chat
        self.stops = stops
        self.interval = interval
        self._no_drafts: set[int] = set()

    async def reply(self, bot: Bot, chat: Chat, account: Account, content: Content) -> Reply:
        """Answer ``content`` — text, or a list of OpenAI content parts (text, images) — in ``chat``.

        Uses the account's model, role and stored context. Raises what ``ChatService.stream_reply`` raises
        (QuotaExceeded before any model call, VisionUnsupported, LLMError subclasses with the request refunded)
        and ``ChatGone`` when the chat cannot receive the answer.
        """
        answer_id = secrets.randbelow(DRAFT_ID_LIMIT) + 1
        reply = Reply()
        async with self.stops.streaming(chat.id, answer_id) as stop:
            renderer = AnswerRenderer(
                ChatOutput(bot, chat.id),
                answer_id,
                drafts=chat.type == ChatType.PRIVATE and chat.id not in self._no_drafts,
                interval=self.interval,
                on_drafts_refused=lambda: self._remember_no_drafts(chat.id),
                stop=stop,
                complete=lambda: reply.complete,
            )
            dialog = self.chat.dialog_for(account)
            await renderer.stream(self.chat.stream_reply(dialog, content, stop=stop, reply=reply))
        await renderer.finish(reply.text, stopped=reply.stopped)
        return reply

    def _remember_no_drafts(self, chat_id: int) -> None:
        if len(self._no_drafts) >= NO_DRAFTS_MEMORY:
            self._no_drafts.clear()
        self._no_drafts.add(chat_id)
