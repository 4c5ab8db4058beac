"""Stop events of the answers being streamed in this process, keyed by chat and answer id.

With several instances (webhook mode) the Stop button may reach another instance than the one streaming the
answer: ``pomogator.bot.redis_stops.RedisStopRegistry`` passes it on through Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class StopRegistry:
    """The Stop button (or a stopped draft) sets the event of the answer it belongs to; /stop those of the chat."""

    def __init__(self) -> None:
        self._events: dict[tuple[int, int], asyncio.Event] = {}

    def open(self, chat_id: int, answer_id: int) -> asyncio.Event:
        event = self._events[(chat_id, answer_id)] = asyncio.Event()
        return event

    def close(self, chat_id: int, answer_id: int) -> None:
        self._events.pop((chat_id, answer_id), None)

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
