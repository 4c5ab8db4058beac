"""The last step of the message path: ask the model and stream its answer into the chat."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncGenerator, Callable

from aiogram import Bot
from aiogram.enums import ChatType
from aiogram.types import Chat

from pomogator.bot.answer.output import ChatOutput
from pomogator.bot.answer.renderer import UPDATE_INTERVAL, AnswerRenderer
from pomogator.bot.answer.stops import StopRegistry
from pomogator.bot.flood_wait import FloodWaitTooLong
from pomogator.bot.replies import tell_if_model_reset
from pomogator.services.chat import ChatService, Reply, SenderUndecided
from pomogator.services.conversations import Content
from pomogator.services.users import Account, Person, UserService

# Chats where Telegram refused a draft are remembered (up to this many) and answered with edits.
NO_DRAFTS_MEMORY = 10_000
DRAFT_ID_LIMIT = 2**31 - 1


class Answerer:
    def __init__(
        self,
        chat: ChatService,
        stops: StopRegistry,
        users: UserService,
        *,
        premium_on_sale: bool,
        interval: float = UPDATE_INTERVAL,
    ) -> None:
        self.chat = chat
        self.stops = stops
        self.users = users
        self.interval = interval
        self.premium_on_sale = premium_on_sale
        self._no_drafts: set[int] = set()

    async def reply(self, bot: Bot, chat: Chat, sender: Account | Person, content: Content) -> Reply:
        """Answer ``content`` — text, or a list of OpenAI content parts (text, images) — in ``chat``.

        Uses the sender's model, role and stored context. A sender not yet touched (a ``Person``: text on
        PostgreSQL) is touched in the round trip that takes the request. Raises what ``ChatService.stream_reply``
        raises (QuotaExceeded before any model call, VisionUnsupported, MessageTooLong and LLMError subclasses with
        the request refunded) and ``ChatGone`` when the chat cannot receive the answer.
        """
        if isinstance(sender, Person):
            if isinstance(content, str) and self.chat.opens_in_one_trip:
                try:
                    return await self._reply(
                        bot,
                        chat,
                        lambda stop, reply: self.chat.stream_sender_reply(sender, content, stop=stop, reply=reply),
                    )
                except SenderUndecided:
                    pass  # the stored model needs the reset ``touch`` makes; nothing was taken
            account = await self.users.touch(sender)
            await tell_if_model_reset(bot, chat.id, account, premium_on_sale=self.premium_on_sale)
        else:
            account = sender
        dialog = self.chat.dialog_for(account)
        return await self._reply(
            bot, chat, lambda stop, reply: self.chat.stream_reply(dialog, content, stop=stop, reply=reply)
        )

    async def _reply(
        self,
        bot: Bot,
        chat: Chat,
        pieces: Callable[[asyncio.Event, Reply], AsyncGenerator[str, None]],
    ) -> Reply:
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
            await renderer.stream(pieces(stop, reply))
        try:
            await renderer.finish(
                reply.text,
                stopped=reply.stopped,
                charged=reply.charged,
                cut_off=reply.cut_off,
                filtered=reply.filtered,
                unsaved=reply.unsaved,
            )
        except FloodWaitTooLong:
            # Telegram holds the whole answer back for longer than a call waits: the person gets nothing and is
            # asked to try again; the request is given back and the answer leaves the context.
            await self.chat.take_back(reply)
            raise
        return reply

    def _remember_no_drafts(self, chat_id: int) -> None:
        if len(self._no_drafts) >= NO_DRAFTS_MEMORY:
            self._no_drafts.clear()
        self._no_drafts.add(chat_id)
