"""Stop events of the answers being streamed in this process, keyed by chat and answer id."""

from __future__ import annotations

import asyncio


class StopRegistry:
    """The Stop button (or a stopped draft) sets the event of the answer it belongs to."""

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

    def __len__(self) -> int:
        return len(self._events)
