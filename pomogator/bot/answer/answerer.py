"""The last step of the message path: ask the model and stream its answer into the chat."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncGenerator, Callable

from aiogram import Bot
from aiogram.enums import ChatType
from aiogram.types import Chat
from loguru import logger

from pomogator.bot import files_texts
from pomogator.bot.answer.output import ChatOutput
from pomogator.bot.answer.renderer import UPDATE_INTERVAL, AnswerRenderer
from pomogator.bot.answer.stops import StopRegistry
from pomogator.bot.comments import Comment
from pomogator.bot.replies import tell_if_model_reset
from pomogator.services.chat import ChatService, Reply, SenderUndecided
from pomogator.services.conversations import Content
from pomogator.services.formatting.fences import continued_code
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

    async def reply(
        self, bot: Bot, chat: Chat, sender: Account | Person, content: Content, *, comment: Comment | None = None
    ) -> Reply:
        """Answer ``content`` — text, or a list of OpenAI content parts (text, images) — in ``chat``.

        Uses the sender's model, role and stored context. A sender not yet touched (a ``Person``: text on
        PostgreSQL) is touched in the round trip that takes the request. Raises what ``ChatService.stream_reply``
        raises (QuotaExceeded before any model call, VisionUnsupported, MessageTooLong and LLMError subclasses with
        the request refunded) and ``ChatGone`` when the chat cannot receive the answer.

        A text that may be a forward's ``comment`` is answered until it is withdrawn (``pomogator.bot.comments``):
        the answer then ends without a word, its request given back and nothing of it stored; ``Reply.stopped``.
        """
        if isinstance(sender, Person):
            if isinstance(content, str) and self.chat.opens_in_one_trip:
                try:
                    return await self._reply(
                        bot,
                        chat,
                        lambda stop, reply: self.chat.stream_sender_reply(sender, content, stop=stop, reply=reply),
                        comment,
                    )
                except SenderUndecided:
                    pass  # the stored model needs the reset ``touch`` makes; nothing was taken
            account = await self.users.touch(sender)
            await tell_if_model_reset(bot, chat.id, account, premium_on_sale=self.premium_on_sale)
        else:
            account = sender
        dialog = self.chat.dialog_for(account)
        return await self._reply(
            bot, chat, lambda stop, reply: self.chat.stream_reply(dialog, content, stop=stop, reply=reply), comment
        )

    async def _reply(
        self,
        bot: Bot,
        chat: Chat,
        pieces: Callable[[asyncio.Event, Reply], AsyncGenerator[str, None]],
        comment: Comment | None = None,
    ) -> Reply:
        answer_id = secrets.randbelow(DRAFT_ID_LIMIT) + 1

        def on_complete() -> None:
            # The whole text is written: it is no longer stopped, nor withdrawn.
            self.stops.written(chat.id, answer_id)
            if comment is not None:
                comment.settle()

        reply = Reply(on_complete=on_complete)
        if comment is not None and comment.withdrawn:
            reply.stopped = True
            return reply
        turn = self.stops.turn_event(chat.id)
        if turn is not None and turn.is_set():
            # /stop came while the message waited for its other parts or its files were read: the model is not asked.
            reply.stopped = True
            await AnswerRenderer(ChatOutput(bot, chat.id), answer_id, drafts=False).finish("", stopped=True)
            return reply
        try:
            async with self.stops.streaming(chat.id, answer_id) as stop:
                await self.stops.end_turn(chat.id)
                if comment is not None:
                    comment.watch(stop)
                renderer = AnswerRenderer(
                    ChatOutput(bot, chat.id),
                    answer_id,
                    drafts=chat.type == ChatType.PRIVATE and chat.id not in self._no_drafts,
                    interval=self.interval,
                    on_drafts_refused=lambda: self._remember_no_drafts(chat.id),
                    stop=stop,
                    complete=lambda: reply.complete,
                    before_show=comment.settle if comment is not None else None,
                    shown=lambda text: continued_code(text, reply.open_fence),
                )
                await renderer.stream(pieces(stop, reply))
            if comment is not None and not comment.settle():
                # The text went with the forward after it: nothing of this answer showed, and none of it stays.
                reply.stopped = True
                if reply.charged or reply.stored is not None:
                    await self._take_back(reply, "withdrawn comment")
                return reply
            await renderer.finish(
                reply.text,
                stopped=reply.stopped,
                charged=reply.charged,
                cut_off=reply.cut_off,
                filtered=reply.filtered,
                unsaved=reply.unsaved,
            )
        except SenderUndecided:
            raise  # nothing taken: answered again once the sender is touched
        except BaseException as exc:
            # The answer was kept and counted but did not reach the person: Telegram held it back longer than a call
            # waits (FloodWaitTooLong), could not be reached, or a shutdown cut the answer off. They get nothing (or
            # its start) and are asked to send it again: the request is given back and the answer leaves the
            # context, so asking again does not find it answered.
            # An error is told (``ErrorMiddleware``) and keeps the text from a forward after it, unless that forward
            # took the text already: it is answered there, whatever befell this answer.
            withdrawn = comment is not None and not comment.settle()
            if reply.charged or reply.stored is not None:
                await self._take_back(reply, type(exc).__name__)
            if withdrawn and isinstance(exc, Exception):
                reply.stopped = True
                return reply
            raise
        if reply.forgotten_files and reply.charged:
            await self._tell_forgotten(ChatOutput(bot, chat.id), reply.forgotten_files)
        return reply

    async def _tell_forgotten(self, out: ChatOutput, names: tuple[str, ...]) -> None:
        """Tell, after the answer, that files sent earlier no longer reach the model (``Reply.forgotten_files``).
        The answer is delivered already: a notice that cannot be sent costs only itself."""
        try:
            await out.send(files_texts.files_forgotten(names))
        except Exception as exc:
            logger.warning("The notice of files no longer in the context was not sent: {!r}", exc)

    async def _take_back(self, reply: Reply, why: str) -> None:
        """``ChatService.take_back``, to the end even when the answer is being cancelled (a shutdown awaits it); its
        own failure is logged (with ``why`` the answer is taken back) and does not replace the answer's."""
        try:
            await asyncio.shield(self.chat.take_back(reply))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.opt(exception=exc).error("An undelivered answer ({}) could not be given back", why)

    def _remember_no_drafts(self, chat_id: int) -> None:
        if len(self._no_drafts) >= NO_DRAFTS_MEMORY:
            self._no_drafts.clear()
        self._no_drafts.add(chat_id)
