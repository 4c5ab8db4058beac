"""The Stop button across instances: the instance streaming an answer marks it in Redis; a Stop pressed on any other
instance claims that mark and publishes the stop, which the streaming instance receives through ``Broadcasts``.
A chat's turn (``StopRegistry.turn``, under answer id ``TURN``) is marked alike, so /stop sent to another instance
while a file is read there is not told that nothing is being written."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from pomogator.bot.answer.stops import StopRegistry
from pomogator.bot.broadcasts import Broadcasts

# Longer than any answer streams (the model call times out well before); a dead instance's marks expire.
STREAMING_MARK_TTL_S = 3600
# In a published stop, in place of an answer id: every answer of the chat.
EVERY_ANSWER = "*"


class RedisStopRegistry(StopRegistry):
    def __init__(self, redis: Redis, prefix: str, broadcasts: Broadcasts) -> None:
        super().__init__()
        self._redis = redis
        self._prefix = prefix
        self._channel = f"{prefix}:stop"
        broadcasts.on(self._channel, self._on_stop)

    def _mark(self, chat_id: int, answer_id: int) -> str:
        return f"{self._prefix}:streaming:{chat_id}:{answer_id}"

    @contextlib.asynccontextmanager
    async def streaming(self, chat_id: int, answer_id: int) -> AsyncIterator[asyncio.Event]:
        event = self.open(chat_id, answer_id)
        mark = self._mark(chat_id, answer_id)
        try:
            await self._redis.set(mark, "1", ex=STREAMING_MARK_TTL_S)
        except RedisError as exc:
            logger.warning("Redis unavailable ({}); this answer can be stopped on this instance only", exc)
        try:
            yield event
        finally:
            self.close(chat_id, answer_id)
            with contextlib.suppress(RedisError):
                await self._redis.delete(mark)

    async def request_stop(self, chat_id: int, answer_id: int) -> bool:
        if self.stop(chat_id, answer_id):
            with contextlib.suppress(RedisError):
                await self._redis.delete(self._mark(chat_id, answer_id))
            return True
        try:
            # Claiming the mark makes a second press (on any instance) say that the answer is already stopping.
            if not await self._redis.delete(self._mark(chat_id, answer_id)):
                return False
            await self._redis.publish(self._channel, f"{chat_id}:{answer_id}")
        except RedisError as exc:
            logger.warning("Could not pass a Stop on through Redis: {}", exc)
            return False
        return True

    async def request_stop_chat(self, chat_id: int) -> bool:
        stopped = self.stop_chat(chat_id) > 0
        try:
            # /stop is rare: scanning for the chat's marks costs less than keeping a set per chat at every answer.
            pattern = f"{_glob_escape(self._prefix)}:streaming:{chat_id}:*"
            marks = [mark async for mark in self._redis.scan_iter(match=pattern, count=1000)]
            # Claimed as a Stop press claims them, so a second /stop finds nothing to stop.
            claimed = await self._redis.delete(*marks) if marks else 0
            # Published even without marks: an answer whose mark Redis missed stops too.
            await self._redis.publish(self._channel, f"{chat_id}:{EVERY_ANSWER}")
        except RedisError as exc:
            logger.warning("Could not pass a chat's stop on through Redis: {}", exc)
            return stopped
        return stopped or claimed > 0

    def _on_stop(self, data: str) -> None:
        chat, _, answer = data.partition(":")
        with contextlib.suppress(ValueError):
            if answer == EVERY_ANSWER:
                self.stop_chat(int(chat))
            else:
                self.stop(int(chat), int(answer))


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a SCAN pattern."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)
