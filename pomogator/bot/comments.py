"""A comment the user adds to a forward: answered at once, and withdrawn from its own answer when the forward follows.

Telegram clients send a forward's comment as a message of its own, just before the forwarded messages. When it
arrives it looks like any short question, and waiting to see whether forwards follow would hold up every message.
So every plain text is answered at once, as a ``Comment`` that can still be withdrawn: when forwarded messages follow
it within moments (``pomogator.bot.middlewares.gather``), it becomes their first text, and the forward and its
comment are one request with one answer. Its own answer then ends without a word: a request taken is given back and
nothing is stored (``Answerer``). That holds only while nothing of that answer is visible and the model has not
written all of it: a comment once ``settle``d keeps its own answer, and the forward is answered alone.

Only the message path gives a text up so. A text a forward took before its turn, when it turns out to be a form's
input, is taken back and the forward goes alone; from its turn until the handler that takes it is known, a text is
not withdrawn; one that another handler takes is kept before that handler runs (``CommentGuard``).
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
        # waiting (for its turn), taken (by a forward before its turn: a form may still take it back), handed (to a
        # handler, not yet known which), answering, settled or withdrawn (from its answer, which stops)
        self._state = "waiting"
        self._stop: asyncio.Event | None = None

    @property
    def withdrawn(self) -> bool:
        """Whether the text goes with the forward after it."""
        return self._state in {"taken", "withdrawn"}

    def withdraw(self) -> bool:
        """Take the text for the forward after it; its answer, if one began, stops. False when it stays."""
        if self._state == "waiting":
            self._state = "taken"
            return True
        if self._state != "answering":
            return False
        self._state = "withdrawn"
        if self._stop is not None:
            self._stop.set()
        return True

    def hand_over(self) -> None:
        """Its turn came: a handler is about to take it, unless a forward took it first."""
        if self._state == "waiting":
            self._state = "handed"

    def claim(self) -> None:
        """The message path answers it: it may be withdrawn again until it settles."""
        if self._state == "handed":
            self._state = "answering"

    def settle(self) -> bool:
        """Keep the text with its own answer from now on (something of it is about to show); False when it was
        withdrawn already."""
        if self.withdrawn:
            return False
        self._state = "settled"
        return True

    def keep(self) -> bool:
        """Keep the text for a handler other than the message path (a form's input), taking it back from a forward
        that took it before its turn (that forward goes alone); False when its own answer was withdrawn."""
        if self._state == "withdrawn":
            return False
        self._state = "settled"
        return True

    def watch(self, stop: asyncio.Event) -> None:
        """Set ``stop`` (the answer's stop event) when the comment is withdrawn, or now if it was."""
        self._stop = stop
        if self.withdrawn:
            stop.set()


class CommentGuard(BaseMiddleware):
    """A message middleware: a plain text is claimed by the message path (``ANSWERS_COMMENT``), which leaves one a
    forward took to that forward, and kept for any other handler (a form's input): what that handler does with it is
    final."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        comment: Comment | None = data.get(COMMENT_KEY)
        if comment is not None:
            if get_flag(data, ANSWERS_COMMENT):
                if comment.withdrawn:
                    return None  # answered with the forward that took it
                comment.claim()
            elif not comment.keep():
                return None
        return await handler(event, data)
