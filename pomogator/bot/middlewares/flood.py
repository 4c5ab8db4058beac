"""Per-user flood protection: beyond N messages a minute one notice, then silence until the minute passes; the
same for presses of inline buttons, with a limit of their own, and for the commands that skip the chat's queue
(``UNQUEUED_COMMANDS``: /stop), with one of theirs. /stop is not counted among the messages: it is how a user who
sent too many stops the answer being written meanwhile, and after the flood notice it must still work."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Chat, TelegramObject, Update, User
from loguru import logger

from pomogator.bot import texts
from pomogator.bot.comments import COMMENT_KEY, Comment
from pomogator.bot.middlewares.chat_order import UNQUEUED_COMMANDS, command_name
from pomogator.bot.middlewares.gather import BATCH_KEY, Batch

WINDOW_SECONDS = 60.0
# Button presses allowed a minute, per message allowed: paging through a menu is quicker than writing. Without a
# limit a client that sends presses itself could make the bot call YooKassa (a plan button) as often as it likes.
PRESSES_PER_MESSAGE = 2
# Forget users idle for a window, checked every this many messages.
SWEEP_EVERY = 1000


class Verdict(Enum):
    allow = "allow"
    warn = "warn"
    ignore = "ignore"


@dataclass
class _Window:
    accepted: deque[float] = field(default_factory=deque)
    warned: bool = False


class FloodGuard:
    """Sliding window of accepted messages per user. Refused messages do not count, so a user who keeps
    writing gets a message through as soon as their oldest accepted one is a minute old."""

    def __init__(self, limit: int, window: float = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window
        self._clock = clock
        self._users: dict[int, _Window] = {}
        self._seen = 0

    def __len__(self) -> int:
        return len(self._users)

    def check(self, user_id: int) -> Verdict:
        now = self._clock()
        self._seen += 1
        if self._seen % SWEEP_EVERY == 0:
            self._sweep(now)
        state = self._users.setdefault(user_id, _Window())
        while state.accepted and state.accepted[0] <= now - self.window:
            state.accepted.popleft()
        if len(state.accepted) < self.limit:
            state.accepted.append(now)
            state.warned = False
            return Verdict.allow
        if state.warned:
            return Verdict.ignore
        state.warned = True
        return Verdict.warn

    def _sweep(self, now: float) -> None:
        idle = [uid for uid, s in self._users.items() if not s.accepted or s.accepted[-1] <= now - self.window]
        for uid in idle:
            del self._users[uid]


class FloodMiddleware(BaseMiddleware):
    """Applies a FloodGuard to incoming messages, another to button presses and a third to the ``unqueued``
    commands, before they queue for their chat."""

    def __init__(
        self,
        guard: FloodGuard,
        presses: FloodGuard | None = None,
        *,
        unqueued: frozenset[str] = UNQUEUED_COMMANDS,
    ) -> None:
        self.guard = guard
        self.presses = presses if presses is not None else FloodGuard(guard.limit * PRESSES_PER_MESSAGE, guard.window)
        self.unqueued = unqueued
        # A guard of their own: a client sending /stop nonstop is still held back, without taking a message's place.
        self.commands = FloodGuard(guard.limit, guard.window)

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        if not isinstance(event, Update) or user is None:
            return await handler(event, data)
        bot: Bot = data["bot"]
        if event.callback_query is not None:
            verdict = self.presses.check(user.id)
            if verdict is Verdict.warn:
                logger.info("Button press limit reached; ignoring this user's presses for a while")
                # A press left unanswered spins until the client gives up; the first refused one says why.
                try:
                    await bot.answer_callback_query(event.callback_query.id, text=texts.PRESSES_FLOOD)
                except TelegramAPIError as exc:
                    logger.info("Press limit notice not delivered: {}", exc.message)
        elif event.message is not None:
            batch: Batch | None = data.get(BATCH_KEY)
            if batch is not None and batch.comment is not None:
                # A forward with the comment typed for it: one request, counted already as that comment.
                return await handler(event, data)
            unqueued = command_name(event.message) in self.unqueued
            verdict = (self.commands if unqueued else self.guard).check(user.id)
            comment: Comment | None = data.get(COMMENT_KEY)
            if verdict is not Verdict.allow and comment is not None:
                comment.keep()  # refused: no forward after it takes it past the guard

            if verdict is Verdict.warn:
                logger.info("Flood limit reached; ignoring this user's messages for a while")
                chat: Chat = event.message.chat
                try:
                    await bot.send_message(chat.id, texts.FLOOD)
                except TelegramAPIError as exc:
                    logger.info("Flood notice not delivered: {}", exc.message)
        else:
            return await handler(event, data)
        if verdict is Verdict.allow:
            return await handler(event, data)
        return None
