"""The conversation state in Redis, for a bot that must go on answering while Redis is away.

aiogram reads the state of every update's chat. Read from aiogram's ``RedisStorage`` as it is, a Redis that cannot
be reached would fail every message, although the state matters only to the two forms (the /role prompt and the
receipt e-mail prompt). ``OutageTolerantStorage`` wraps it:

* a state or data that cannot be read is none: messages are answered as if no form waited (a form pending when
  Redis went away takes no answer meanwhile; the text goes to the model as a question);
* a form that cannot be opened raises ``FormUnavailable``, which tells the user to try again in a few minutes:
  its prompt is already on the screen, and without a word the answer typed to it would go to the model as a
  question and count as a request;
* a form that cannot be ended (cleared) is left in Redis and the message that ended it is answered as usual; the
  form then waits as before Redis failed: a text sent within ``FORM_TTL_S`` of its prompt may still answer it,
  and the next command or button ends it.

Failures are logged as one warning, without a traceback, at most every ``WARN_EVERY_S`` seconds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey
from loguru import logger
from redis.exceptions import RedisError

from pomogator.errors import FormUnavailable

WARN_EVERY_S = 60.0


class OutageTolerantStorage(BaseStorage):
    """``storage`` (Redis-backed) that reads nothing and opens no form while Redis fails (see the module docstring)."""

    def __init__(
        self, storage: BaseStorage, *, warn_every: float = WARN_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.storage = storage
        self._warn_every = warn_every
        self._clock = clock
        self._warned_at: float | None = None
        self._unsaid = 0

    async def get_state(self, key: StorageKey) -> str | None:
        try:
            return await self.storage.get_state(key)
        except RedisError as exc:
            self._failed(exc)
            return None

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        try:
            return await self.storage.get_data(key)
        except RedisError as exc:
            self._failed(exc)
            return {}

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        try:
            await self.storage.set_state(key, state)
        except RedisError as exc:
            if state is not None:
                raise FormUnavailable(f"Redis did not keep a form's state: {exc}") from exc
            self._failed(exc)

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        try:
            await self.storage.set_data(key, data)
        except RedisError as exc:
            if data:
                # The state may have been kept a moment before: without its data (the prompt, the time) the form
                # would take any later message, however late. It goes if Redis lets it.
                with contextlib.suppress(RedisError):
                    await self.storage.set_state(key, None)
                raise FormUnavailable(f"Redis did not keep a form's data: {exc}") from exc
            self._failed(exc)

    async def close(self) -> None:
        await self.storage.close()

    def _failed(self, exc: RedisError) -> None:
        now = self._clock()
        if self._warned_at is not None and now - self._warned_at < self._warn_every:
            self._unsaid += 1
            return
        earlier = f"; {self._unsaid} more failures since the last warning" if self._unsaid else ""
        logger.warning(
            "Redis unavailable ({}): conversation states read as none and forms not opened until it is back{}",
            exc,
            earlier,
        )
        self._warned_at, self._unsaid = now, 0
