"""Which chats had their person's data erased (/delete_me) a moment ago, and by which update.

A message sent before the erasure can still be waiting for its turn in the chat's queue (behind the answer the
erasure stopped, say). Handled then, it would create the account anew and store its dialog right after «Ваши данные
удалены». ``AccountMiddleware`` asks here and drops such a message.

Telegram numbers updates in the order they happen, so "sent before the erasure" is exact: an update id below the
confirmation's. Clocks are not compared (a message's date is Telegram's, in whole seconds).

The marks are kept with what the instances share (``pomogator.bot.shared``): in Redis when they share it (any
instance may handle the queued message; ``pomogator.bot.redis_erasures``), else in this process. They last
``ERASURE_MARK_TTL_S``.
"""

from __future__ import annotations

import time
from typing import Protocol

ERASURE_MARK_TTL_S = 600
"""How long an erasure's mark lasts. The messages queued behind it are handled within seconds once the answer they
waited for is stopped; the rest covers a turn held by an instance that died and an update Telegram delivers again.
Short, as it is a note about a person who asked to be forgotten."""


class ErasureMarks(Protocol):
    async def mark(self, chat_id: int, update_id: int) -> None:
        """The person of ``chat_id`` was erased by update ``update_id`` (the confirmation)."""

    async def erased_after(self, chat_id: int, update_id: int) -> bool:
        """Whether ``chat_id``'s person was erased lately by an update later than ``update_id``: a message of that
        update was sent before the erasure."""


class MemoryErasureMarks:
    """One process's marks (the polling bot, or webhook instances without Redis)."""

    def __init__(self, ttl: float = ERASURE_MARK_TTL_S) -> None:
        self.ttl = ttl
        # chat id -> (the erasing update's id, when the mark lapses on the monotonic clock)
        self._marks: dict[int, tuple[int, float]] = {}

    async def mark(self, chat_id: int, update_id: int) -> None:
        now = time.monotonic()
        # Erasures are rare: lapsed marks are swept as new ones come.
        self._marks = {chat: mark for chat, mark in self._marks.items() if mark[1] > now}
        self._marks[chat_id] = (update_id, now + self.ttl)

    async def erased_after(self, chat_id: int, update_id: int) -> bool:
        mark = self._marks.get(chat_id)
        return mark is not None and mark[1] > time.monotonic() and update_id < mark[0]
