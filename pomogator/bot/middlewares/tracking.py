"""Which updates are being handled, so a shutdown can let them finish, and cut off those that take too long."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update


class UpdateTracker(BaseMiddleware):
    """Counts updates in progress; ``drain`` waits until none is (polling has stopped, so no new ones come)."""

    def __init__(self) -> None:
        self._active: dict[int, Update] = {}
        self._tasks: dict[int, asyncio.Task[Any]] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def active(self) -> int:
        return len(self._active)

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, Update):
            return await handler(event, data)
        self._active[event.update_id] = event
        task = asyncio.current_task()
        if task is not None:
            self._tasks[event.update_id] = task
        self._idle.clear()
        try:
            return await handler(event, data)
        finally:
            self._active.pop(event.update_id, None)
            self._tasks.pop(event.update_id, None)
            if not self._active:
                self._idle.set()

    @property
    def in_progress(self) -> list[Update]:
        """The updates still being handled."""
        return list(self._active.values())

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109 - the grace period is a plain deadline
        """Wait up to ``timeout`` seconds for the updates in progress; True when all finished."""
        # Updates fetched together with the last poll may not have started yet: let them register first.
        await asyncio.sleep(0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        return not self._active

    async def cut_off(self) -> list[Update]:
        """Cancel the updates still in progress and wait until they have ended (an answer cut off gives its request
        back while the services are still open); returns them."""
        updates = self.in_progress
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return updates
