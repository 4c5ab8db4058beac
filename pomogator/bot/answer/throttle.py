"""Pacing of live updates: at most one visible change per interval."""

from __future__ import annotations

import time
from collections.abc import Callable


class Throttle:
    """Allows an action at most once per ``interval`` seconds; a flood wait can push the next one further."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._next = float("-inf")

    def delay(self) -> float:
        """Seconds to wait before the next action is allowed (0 when it is allowed now)."""
        return max(self._next - self._clock(), 0.0)

    def mark(self) -> None:
        """An action just happened."""
        self._next = max(self._next, self._clock() + self.interval)

    def defer(self, seconds: float) -> None:
        """Telegram asked to wait ``seconds`` before the next action."""
        self._next = max(self._next, self._clock() + seconds)
