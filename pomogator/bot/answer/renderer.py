"""Streaming one answer into a chat.

While the model writes, the chat sees "typing…" until the first words (unless they come at once), then a live view
updated at most once per interval: a draft (``sendMessageDraft`` with Telegram's own stop button) in private chats,
or a message edited in place with a "⏹ Стоп" button where drafts are not available. A live update never blocks
reading the model's stream: the latest text is rendered each time, so a slow or flood-limited update is simply
followed by a fresher one. A Markdown marker the model has not closed yet is left out of the live view
(``live_markdown``). A draft lasts 30 seconds on screen: while the model pauses, it is sent again. When the answer
outgrows one message, the full chunks are sent as messages and the live view goes on with the rest. Text the model
has finished writing is not previewed: its message follows at once. At the end the chain of messages is made to
show exactly the final rendering, without buttons.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiogram.exceptions import TelegramAPIError, TelegramRetryAfter
from aiogram.types import InlineKeyboardMarkup
from loguru import logger

from pomogator.bot import texts
from pomogator.bot.answer.messages import MessageChain
from pomogator.bot.answer.output import ChatGone, ChatOutput, DraftsUnavailable
from pomogator.bot.answer.throttle import Throttle
from pomogator.bot.keyboards import make_stop_keyboard
from pomogator.errors import LLMError
from pomogator.services.formatting import render_answer, render_answer_ending
from pomogator.services.formatting.live import live_markdown

UPDATE_INTERVAL = 1.0
TYPING_EVERY = 4.5
# "typing…" is sent only when the first words take longer than this: Telegram asks bots to use chat actions only
# when a response takes a noticeable time, and a request saved per fast answer is a request that counts against no
# flood limit.
TYPING_AFTER = 0.3
# Once the model has written its whole text, the answer's message follows as soon as the stream ends and the answer
# is stored; a draft would only flash before it. The draft is shown anyway if that end takes longer than this.
END_GRACE = 0.5
# How long the messages of an answer that could not be delivered whole are tried to be deleted (best effort: the
# person is told it failed either way).
DISCARD_WAIT_S = 10.0
# Telegram shows a draft as a 30-second preview: while the model pauses longer (a provider's hiccup, a model that
# thinks between bursts), the same draft goes again this often, so the answer and its Stop button do not vanish.
DRAFT_REFRESH = 20.0


async def keep_typing(out: ChatOutput, every: float = TYPING_EVERY) -> None:
    """Show "typing…" every ``every`` seconds (Telegram shows it about five) until cancelled or the chat is gone."""
    while True:
        try:
            await out.typing()
        except ChatGone:
            return
        await asyncio.sleep(every)


@asynccontextmanager
async def typing_shown(out: ChatOutput, every: float = TYPING_EVERY) -> AsyncIterator[None]:
    """Keep "typing…" on while the block runs: work before an answer that may take minutes (downloading and
    reading a file). The wait for the model's first words is ``AnswerRenderer``'s own."""
    task = asyncio.create_task(keep_typing(out, every))
    try:
        yield
    finally:
        task.cancel()


class AnswerRenderer:
    def __init__(
        self,
        out: ChatOutput,
        answer_id: int,
        *,
        drafts: bool,
        stop_markup: InlineKeyboardMarkup | None = None,
        interval: float = UPDATE_INTERVAL,
        typing_every: float = TYPING_EVERY,
        typing_after: float = TYPING_AFTER,
        on_drafts_refused: Callable[[], None] | None = None,
        stop: asyncio.Event | None = None,
        complete: Callable[[], bool] | None = None,
        end_grace: float = END_GRACE,
        before_show: Callable[[], bool] | None = None,
        draft_refresh: float = DRAFT_REFRESH,
        shown: Callable[[str], str] | None = None,
    ) -> None:
        self.out = out
        self.answer_id = answer_id
        self.drafts = drafts
        self.chain = MessageChain(out)
        # Only edited answers carry the button (drafts have Telegram's own): it is built when first needed.
        self._stop_markup = stop_markup
        self._throttle = Throttle(interval)
        self._typing_every = typing_every
        self._typing_after = typing_after
        self._typing: asyncio.Task[None] | None = None
        self._on_drafts_refused = on_drafts_refused
        # Once the user pressed Stop, nothing more is shown live: only the final message follows.
        self._stop = stop
        # Says whether the model has written all of its text (the stream may still be ending).
        self._complete = complete
        self._end_grace = end_grace
        # Asked before each live update; False means nothing more is shown live.
        self._before_show = before_show
        self._draft_refresh = draft_refresh
        # What of the model's text is shown (rendered): the text itself unless a caller adds to it.
        self._shown = shown or (lambda text: text)
        self._text = ""
        self._drafted: list[str] | None = None
        self._changed = asyncio.Event()
        self._finished = asyncio.Event()

    async def stream(self, pieces: AsyncIterator[str]) -> str:
        """Show ``pieces`` live as they arrive; returns the whole text.

        When the model fails part-way, what it wrote stays, as messages with a mark that it broke off and is not in
        the context (the request is not counted, and the user may want what was there). On any other failure the
        live messages are removed. The exception propagates.
        """
        # "typing…" is a timer until it is due; its task is started only then (most answers start before).
        typing = asyncio.get_running_loop().call_later(self._typing_after, self._start_typing)
        presenter: asyncio.Task[None] | None = None
        try:
            try:
                async for piece in pieces:
                    self._text += piece
                    self._changed.set()
                    if presenter is None:
                        typing.cancel()
                        self._stop_typing()
                        presenter = asyncio.create_task(self._present())
                    elif presenter.done():
                        presenter.result()  # the chat is gone: stop reading the model
            finally:
                typing.cancel()
                self._stop_typing()
                # Ends the model's stream at once when we leave early, so ChatService refunds the request.
                aclose = getattr(pieces, "aclose", None)
                if aclose is not None:
                    await aclose()
        except BaseException as exc:
            if presenter is not None:
                presenter.cancel()
                with contextlib.suppress(BaseException):
                    await presenter
            if isinstance(exc, LLMError) and render_answer(self._shown(self._text)):
                await self._keep_broken_off()
            else:
                await self._discard()
            raise
        if presenter is not None:
            self._finished.set()
            self._changed.set()
            await presenter
        return self._text

    async def finish(
        self,
        text: str,
        *,
        stopped: bool,
        charged: bool = False,
        cut_off: bool = False,
        filtered: bool = False,
        unsaved: bool = False,
    ) -> None:
        """Show the final answer: formatted messages, no buttons. A stopped answer says so at its end, and that it
        was not counted when it shows nothing and was not ``charged``; an answer ``cut_off`` by the model's length
        limit says how to get the rest, one the model's content filter ended (``filtered``) says so; an ``unsaved``
        one that later messages will not have it in their context."""
        ended = texts.CUT_OFF_MARK if cut_off else texts.FILTERED_MARK if filtered else None
        marks = [texts.STOPPED_MARK if stopped else ended]
        marks.append(texts.UNSAVED_MARK if unsaved else None)
        ending = "\n\n".join(mark for mark in marks if mark is not None)
        text = self._shown(text)
        chunks = render_answer_ending(text, ending) if ending else render_answer(text)
        if not chunks:
            stopped_empty = texts.STOPPED_MARK if charged else texts.STOPPED_EMPTY
            chunks = [stopped_empty if stopped else texts.EMPTY_ANSWER]
        if chunks != self._drafted:
            # The last draft or edit may have been shown moments ago; keep to one visible change per interval (the
            # delay is 0 when nothing was shown live). A message with exactly what the draft showed only makes it
            # permanent, and goes at once.
            await asyncio.sleep(self._final_delay())
        try:
            await self.chain.sync(chunks)
        except Exception:
            # Not delivered whole (Telegram held it back or could not be reached): the answer is given back and
            # leaves the context, so what was posted of it goes too, as when an answer fails while streaming. Left
            # alone, its first part would read as the whole answer, a Stop button still under it.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(DISCARD_WAIT_S):
                    await self._discard()
            raise

    async def _keep_broken_off(self) -> None:
        chunks = render_answer_ending(self._shown(self._text), texts.BROKEN_OFF_MARK)
        try:
            await asyncio.sleep(self._final_delay())
            await self.chain.sync(chunks)
        except ChatGone:
            pass
        except TelegramAPIError as exc:
            logger.warning("The broken-off answer could not be kept: {}", exc.message)
            await self._discard()

    def _final_delay(self) -> float:
        """How long the final messages wait: the live-update interval at most. A flood wait Telegram asked of a
        draft or an edit (minutes, at times) is not slept out here, holding a kept and counted answer and the
        chat's turn: the final calls' own flood handling waits, or gives the answer up (``FloodWaitTooLong``)."""
        return min(self._throttle.delay(), self._throttle.interval)

    async def _discard(self) -> None:
        with contextlib.suppress(ChatGone):
            await self.chain.discard()

    def _start_typing(self) -> None:
        self._typing = asyncio.create_task(keep_typing(self.out, self._typing_every))

    def _stop_typing(self) -> None:
        if self._typing is not None:
            self._typing.cancel()

    async def _present(self) -> None:
        while True:
            await self._next_change()
            if self._done():
                return
            delay = self._throttle.delay()
            if delay > 0:
                await self._until_finished(delay)
            if not self._done() and self._complete is not None and self._complete():
                await self._until_finished(self._end_grace)
            if self._done():
                return
            self._changed.clear()
            chunks = render_answer(live_markdown(self._shown(self._text)))
            if chunks:
                if self._before_show is not None and not self._before_show():
                    return
                await self._show(chunks)
                self._throttle.mark()

    async def _next_change(self) -> None:
        """Until the text changes (or the answer ends); a draft shown meanwhile is sent again every
        ``draft_refresh`` seconds, unless a flood wait or Stop holds live updates back."""
        while self.drafts and self._drafted is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._draft_refresh):
                    await self._changed.wait()
            if self._changed.is_set():
                return
            if self._stopped() or self._throttle.delay() > 0:
                continue
            if self._before_show is not None and not self._before_show():
                break
            await self._show(self._drafted)
            self._throttle.mark()
        await self._changed.wait()

    async def _until_finished(self, seconds: float) -> None:
        # asyncio.timeout, unlike wait_for on Python 3.11, never swallows the cancellation of a failed answer.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._finished.wait()

    def _done(self) -> bool:
        return self._finished.is_set() or self._stopped()

    def _stopped(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def _show(self, chunks: list[str]) -> None:
        try:
            if self.drafts:
                try:
                    await self._show_draft(chunks)
                    return
                except DraftsUnavailable as exc:
                    logger.info("Drafts refused in this chat ({}); editing a message instead", exc)
                    self.drafts = False
                    if self._on_drafts_refused is not None:
                        self._on_drafts_refused()
            await self._show_edit(chunks)
        except TelegramRetryAfter as exc:
            self._throttle.defer(exc.retry_after)
        except ChatGone:
            raise
        except TelegramAPIError as exc:
            # A live update is only a preview: the final message comes anyway.
            logger.warning("Live answer update failed: {}", exc.message)

    async def _show_draft(self, chunks: list[str]) -> None:
        # Chunks before the last are complete: they become messages, and the draft goes on with the rest.
        for index in range(len(self.chain), len(chunks) - 1):
            await self.chain.put(index, chunks[index])
        await self.out.draft(self.answer_id, chunks[-1])
        self._drafted = chunks

    async def _show_edit(self, chunks: list[str]) -> None:
        last = len(chunks) - 1
        for index in range(max(len(self.chain) - 1, 0), len(chunks)):
            await self.chain.put(index, chunks[index], self._stop_button() if index == last else None)

    def _stop_button(self) -> InlineKeyboardMarkup:
        if self._stop_markup is None:
            self._stop_markup = make_stop_keyboard(self.answer_id)
        return self._stop_markup
