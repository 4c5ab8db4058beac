"""Logging refused calls: what anyone on the internet can make happen as often as they like (a webhook call without
the right secret, or from outside the sender's networks).

Each such record is stored by the database sink: logged per request, a request loop would grow the log table (and
stderr) without limit, and push real records out of the sink's bounded queue. ``RefusalLog`` logs the first
one of a minute in full and counts the rest, which are told in one line when the minute ends: a flood costs two
records a minute whatever its rate.
"""

from __future__ import annotations

import asyncio
import math

from loguru import logger

WINDOW_S = 60.0


class RefusalLog:
    """WARNING records about one kind of refused call (``what``, e.g. "Telegram webhook calls without the right
    secret"): the first one per ``WINDOW_S`` in full, then one summary line for the others. Use it from the event
    loop's thread; ``flush`` (at shutdown) writes the summary of the minute that is not over yet."""

    def __init__(self, what: str, *, window: float | None = None) -> None:
        self.what = what
        self.window = WINDOW_S if window is None else window
        self._window_ends = -math.inf
        self._held = 0
        self._summary: asyncio.TimerHandle | None = None

    def refused(self, message: str, *args: object) -> None:
        """Log ``message`` (loguru's ``{}`` formatting) when it is the first refusal this minute; otherwise count
        it."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= self._window_ends:
            self._window_ends = now + self.window
            logger.opt(depth=1).warning(message, *args)
            return
        self._held += 1
        if self._summary is None:
            self._summary = loop.call_at(self._window_ends, self.flush)

    def flush(self) -> None:
        """Log how many were counted and not logged, if any."""
        if self._summary is not None:
            self._summary.cancel()
            self._summary = None
        if self._held:
            held, self._held = self._held, 0
            logger.warning("{}: {} more refused in the last minute, not logged one by one", self.what, held)
