"""A comment the user adds to a forward: answered at once, and withdrawn from its own answer when the forward follows.

Telegram clients send a forward's comment as a message of its own, just before the forwarded messages. When it
arrives it looks like any short question, and waiting to see whether forwards follow would hold up every message.
So every plain text is answered at once, as a ``Comment`` that can still be withdrawn: when forwarded messages follow
it within moments (``pomogator.bot.middlewares.gather``), it becomes their first text, and the forward and its
comment are one request with one answer. Its own answer then ends without a word: a request taken is given back and
nothing is stored (``Answerer``). That holds only while nothing of that answer is visible and the model has not
written all of it: a comment once ``settle``d keeps its own answer, and the forward is answered alone.

Only the message path can withdraw an answer so. From its turn until the handler that takes it is known, a text is
not withdrawn; one that another handler takes (a form's input) is settled before that handler runs
(``CommentGuard``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.flags import get_flag
from aiogram.types import Message, TelegramObject

COMMENT_KEY = "comment"
"""Where a plain text's ``Comment`` is in the handler data."""

ANSWERS_COMMENT = "answers_comment"
"""The flag of a handler that answers a plain text and honours its withdrawal: ``flags={ANSWERS_COMMENT: True}``."""


class Comment:
    """A plain text whose answer may yet be withdrawn (``withdraw``): while it waits for its turn, and once the message
    path answers it (``claim``), until something of that answer shows (``settle``)."""

    __slots__ = ("_state", "_stop", "arrival", "message")

    def __init__(self, message: Message, arrival: float) -> None:
        self.message = message
        self.arrival = arrival
        # waiting (its turn), handed (to a handler, not yet known which), answering, settled or withdrawn
        self._state = "waiting"
        self._stop: asyncio.Event | None = None

    @property
    def withdrawn(self) -> bool:
        return self._state == "withdrawn"

    def withdraw(self) -> bool:
        """Take the text from its own answer, which stops; False when the text stays with it."""
        if self._state not in {"waiting", "answering"}:
            return False
        self._state = "withdrawn"
        if self._stop is not None:
            self._stop.set()
        return True

    def hand_over(self) -> bool:
        """Its turn came: a handler is about to take it; False when it was withdrawn."""
        if self.withdrawn:
            return False
        self._state = "handed"
        return True

    def claim(self) -> None:
        """The message path answers it: it may be withdrawn again until it settles."""
        if self._state == "handed":
            self._state = "answering"

    def settle(self) -> bool:
        """Keep the text with its own answer from now on (something of it is about to show, or another handler took
        it); False when it was withdrawn already."""
        if self.withdrawn:
            return False
        self._state = "settled"
        return True

    def watch(self, stop: asyncio.Event) -> None:
        """Set ``stop`` (the answer's stop event) when the comment is withdrawn, or now if it was."""
        self._stop = stop
        if self.withdrawn:
            stop.set()


class CommentGuard(BaseMiddleware):
    """A message middleware: a plain text is claimed by the message path (``ANSWERS_COMMENT``), and settled before
    any other handler (a form's input) runs: what that handler does with it is final."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        comment: Comment | None = data.get(COMMENT_KEY)
        if comment is not None:
            if get_flag(data, ANSWERS_COMMENT):
                comment.claim()
            else:
                comment.settle()
        return await handler(event, data)
