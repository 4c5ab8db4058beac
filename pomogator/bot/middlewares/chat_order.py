"""One message at a time per chat, in arrival order.

aiogram handles updates concurrently, so without this two messages from one chat could be answered at once and
their answers interleave. Only the message path queues: button presses (the Stop button above all) and /stop
(``UNQUEUED_COMMANDS``) go straight through. The lock is pluggable: several bot instances behind a webhook share
``RedisChatLocks`` (``pomogator.bot.redis_locks``), which orders waiting messages by update id.

A message's turn is registered with the dispatcher's ``stops`` (``StopRegistry.turn``) while it is handled, so /stop
during the turn stops its answer even before the answer streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Protocol

from aiogram import BaseMiddleware
from aiogram.types import Chat, Message, TelegramObject, Update

from pomogator.bot.answer.stops import StopRegistry
from pomogator.bot.filters import is_command

STOP_COMMAND = "stop"

UNQUEUED_COMMANDS = frozenset({STOP_COMMAND})
"""Commands handled at once, not in the chat's turn.

/stop acts on the answer streaming meanwhile: queued, it would run only once that answer is complete. It reads and
writes nothing else, its handler keeps a pending form (``BESIDE_FORM``), and it says something only when no answer
streams, so running out of turn changes no outcome.

Read-only commands (/help, /profile, /model's menu) keep their turn. Out of turn, their replies would land above the
answers to messages sent before them, and /profile would show the state before those messages did their work
("/role Ты юрист", then /profile, must show the new role). Any command also ends a pending form: run ahead of a
queued /role it would end nothing, and the form it should have ended would take the user's next question.
"""


class ChatLocks(Protocol):
    def hold(self, chat_id: int, order: int = 0) -> AbstractAsyncContextManager[None]:
        """Hold the chat's lock; waiters must get it in the order they asked for it, or by ``order`` (the update
        id) when they ask from several processes."""
        ...


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class _Hold:
    def __init__(self, locks: MemoryChatLocks, chat_id: int) -> None:
        self._locks = locks
        self._chat_id = chat_id

    async def __aenter__(self) -> None:
        await self._locks._acquire(self._chat_id)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._locks._release(self._chat_id)


class MemoryChatLocks:
    """In-process FIFO locks: ``asyncio.Lock`` wakes waiters in the order they queued, and a message queues
    before anything else can suspend, so the order is the order updates arrived. A chat's lock is dropped as
    soon as nobody holds or awaits it."""

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def hold(self, chat_id: int, order: int = 0) -> AbstractAsyncContextManager[None]:
        return _Hold(self, chat_id)

    async def _acquire(self, chat_id: int) -> None:
        entry = self._entries.get(chat_id)
        if entry is None:
            entry = self._entries[chat_id] = _Entry()
        entry.users += 1
        try:
            await entry.lock.acquire()
        except BaseException:
            self._leave(chat_id, entry)
            raise

    def _release(self, chat_id: int) -> None:
        entry = self._entries[chat_id]
        entry.lock.release()
        self._leave(chat_id, entry)

    def _leave(self, chat_id: int, entry: _Entry) -> None:
        entry.users -= 1
        if entry.users == 0:
            del self._entries[chat_id]


def command_name(message: Message) -> str | None:
    """The command ``message`` is (lowercase, without "@bot"), or None for any other message."""
    if not is_command(message) or not message.text:
        return None
    return message.text.split(maxsplit=1)[0][1:].partition("@")[0].lower()


class ChatOrderMiddleware(BaseMiddleware):
    def __init__(self, locks: ChatLocks, unqueued: frozenset[str] = UNQUEUED_COMMANDS) -> None:
        self.locks = locks
        self.unqueued = unqueued

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        chat: Chat | None = data.get("event_chat")
        if not isinstance(event, Update) or event.message is None or chat is None:
            return await handler(event, data)
        if self.unqueued and command_name(event.message) in self.unqueued:
            return await handler(event, data)
        stops: StopRegistry | None = data.get("stops")
        async with self.locks.hold(chat.id, event.update_id):
            if stops is None:
                return await handler(event, data)
            # From here /stop stops this message's answer: before it streams too (files read, parts gathered).
            async with stops.turn(chat.id):
                return await handler(event, data)
