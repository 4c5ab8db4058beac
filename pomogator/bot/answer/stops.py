"""Stop events of the answers being streamed in this process, keyed by chat and answer id, and of the chats' turns.

A chat's turn (``turn``, held by ``pomogator.bot.middlewares.chat_order``) starts before the answer streams: its
files are downloaded and read, its other parts gathered, its request taken. /stop meanwhile stops the answer before
the model is asked.

With several instances (webhook mode) the Stop button may reach another instance than the one streaming the
answer: ``pomogator.bot.redis_stops.RedisStopRegistry`` passes it on through Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

T = TypeVar("T")

# The id a chat's turn is registered under: answer ids start at 1.
TURN = 0


class StopRegistry:
    """The Stop button (or a stopped draft) sets the event of the answer it belongs to; /stop those of the chat."""

    def __init__(self) -> None:
        self._events: dict[tuple[int, int], asyncio.Event] = {}

    def open(self, chat_id: int, answer_id: int) -> asyncio.Event:
        event = self._events[(chat_id, answer_id)] = asyncio.Event()
        return event

    def close(self, chat_id: int, answer_id: int) -> None:
        self._events.pop((chat_id, answer_id), None)

    def written(self, chat_id: int, answer_id: int) -> None:
        """The model has written the whole answer: what is left (its usage, storing it, sending it) is not stopped,
        so a Stop pressed now is told the answer is ready instead of "stopping"."""
        self.close(chat_id, answer_id)

    def stop(self, chat_id: int, answer_id: int) -> bool:
        """Stop the answer; False when it is not streaming (finished, or another process's)."""
        event = self._events.get((chat_id, answer_id))
        if event is None or event.is_set():
            return False
        event.set()
        return True

    @contextlib.asynccontextmanager
    async def streaming(self, chat_id: int, answer_id: int) -> AsyncIterator[asyncio.Event]:
        """The answer's stop event, registered for as long as the answer streams."""
        event = self.open(chat_id, answer_id)
        try:
            yield event
        finally:
            self.close(chat_id, answer_id)

    @contextlib.asynccontextmanager
    async def turn(self, chat_id: int) -> AsyncIterator[asyncio.Event]:
        """The stop event of the chat's turn, registered (as the answers are, so /stop on any instance finds it)
        for as long as one of the chat's messages is handled."""
        async with self.streaming(chat_id, TURN) as event:
            yield event

    async def end_turn(self, chat_id: int) -> None:
        """The turn's answer streams now, stopped through its own registration: /stop no longer counts the turn, which
        nothing would honour once the answer is written (while it is sent, or after)."""
        self.close(chat_id, TURN)

    def turn_event(self, chat_id: int) -> asyncio.Event | None:
        """The stop event of the chat's turn in this process, if one is being handled."""
        return self._events.get((chat_id, TURN))

    async def request_stop(self, chat_id: int, answer_id: int) -> bool:
        """Stop the answer wherever it streams; False when it is not streaming (any more)."""
        return self.stop(chat_id, answer_id)

    def stop_chat(self, chat_id: int) -> int:
        """Stop every answer of the chat streaming in this process; returns how many."""
        events = [event for (chat, _), event in self._events.items() if chat == chat_id and not event.is_set()]
        for event in events:
            event.set()
        return len(events)

    async def request_stop_chat(self, chat_id: int) -> bool:
        """Stop every answer of the chat wherever it streams (/stop, or the person erased their data); False when
        none was streaming."""
        return self.stop_chat(chat_id) > 0

    def __len__(self) -> int:
        return len(self._events)


async def unless_stopped(work: Awaitable[T], stop: asyncio.Event | None) -> T | None:
    """``work``'s result, or None once ``stop`` is set: ``work`` is then cancelled (and awaited, so a child process
    reading a file is gone before this returns)."""
    task = asyncio.ensure_future(work)
    if stop is None:
        return await task
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if stop.is_set():
        if not task.cancelled():
            task.exception()  # retrieved: what failed is moot once stopped
        return None
    return task.result()
