"""The Stop button across instances: the instance streaming an answer marks it in Redis; a Stop pressed on any other
instance claims that mark and publishes the stop, which the streaming instance receives through ``Broadcasts``.
A chat's turn (``StopRegistry.turn``, under answer id ``TURN``) is marked alike, so /stop sent to another instance
while a file is read there is not told that nothing is being written."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from pomogator.bot.answer.stops import TURN, StopRegistry
from pomogator.bot.broadcasts import Broadcasts

# Longer than any answer streams (the model call times out well before); a dead instance's marks expire.
STREAMING_MARK_TTL_S = 3600
# In a published stop, in place of an answer id: every answer of the chat.
EVERY_ANSWER = "*"


class RedisStopRegistry(StopRegistry):
    """Each chat's marks are one hash (answer id -> the time the mark lapses), so a chat-wide stop claims them all
    with one command, whatever else Redis holds. The hash lapses an hour after its last mark was made; a mark left
    by an instance that died meanwhile is told apart by its own time."""

    def __init__(self, redis: Redis, prefix: str, broadcasts: Broadcasts) -> None:
        super().__init__()
        self._redis = redis
        self._prefix = prefix
        self._channel = f"{prefix}:stop"
        self._unmarking: set[asyncio.Future[None]] = set()
        broadcasts.on(self._channel, self._on_stop)

    def _marks(self, chat_id: int) -> str:
        return f"{self._prefix}:streaming:{chat_id}"

    @contextlib.asynccontextmanager
    async def streaming(self, chat_id: int, answer_id: int) -> AsyncIterator[asyncio.Event]:
        event = self.open(chat_id, answer_id)
        marks = self._marks(chat_id)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(marks, str(answer_id), str(time.time() + STREAMING_MARK_TTL_S))
                pipe.expire(marks, STREAMING_MARK_TTL_S)
                await pipe.execute()
        except RedisError as exc:
            logger.warning("Redis unavailable ({}); this answer can be stopped on this instance only", exc)
        try:
            yield event
        finally:
            self.close(chat_id, answer_id)
            with contextlib.suppress(RedisError):
                await self._redis.hdel(marks, str(answer_id))

    def written(self, chat_id: int, answer_id: int) -> None:
        super().written(chat_id, answer_id)
        # Its mark goes too, so a Stop pressed on another instance is not claimed and published for nothing.
        task = asyncio.ensure_future(self._unmark(chat_id, answer_id))
        self._unmarking.add(task)
        task.add_done_callback(self._unmarking.discard)

    async def _unmark(self, chat_id: int, answer_id: int) -> None:
        with contextlib.suppress(RedisError):
            await self._redis.hdel(self._marks(chat_id), str(answer_id))

    async def end_turn(self, chat_id: int) -> None:
        await super().end_turn(chat_id)
        with contextlib.suppress(RedisError):
            await self._redis.hdel(self._marks(chat_id), str(TURN))

    async def request_stop(self, chat_id: int, answer_id: int) -> bool:
        if self.stop(chat_id, answer_id):
            with contextlib.suppress(RedisError):
                await self._redis.hdel(self._marks(chat_id), str(answer_id))
            return True
        try:
            # Claiming the mark makes a second press (on any instance) say that the answer is already stopping.
            if not await self._redis.hdel(self._marks(chat_id), str(answer_id)):
                return False
            await self._redis.publish(self._channel, f"{chat_id}:{answer_id}")
        except RedisError as exc:
            logger.warning("Could not pass a Stop on through Redis: {}", exc)
            return False
        return True

    async def request_stop_chat(self, chat_id: int) -> bool:
        stopped = self.stop_chat(chat_id) > 0
        marks = self._marks(chat_id)
        try:
            # Claimed as a Stop press claims them (read and removed at once), so a second /stop finds nothing.
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hvals(marks)
                pipe.delete(marks)
                lapse_times, _ = await pipe.execute()
            # Published even without marks: an answer whose mark Redis missed stops too.
            await self._redis.publish(self._channel, f"{chat_id}:{EVERY_ANSWER}")
        except RedisError as exc:
            logger.warning("Could not pass a chat's stop on through Redis: {}", exc)
            return stopped
        now = time.time()
        return stopped or any(float(lapses) > now for lapses in lapse_times)

    def _on_stop(self, data: str) -> None:
        chat, _, answer = data.partition(":")
        with contextlib.suppress(ValueError):
            if answer == EVERY_ANSWER:
                self.stop_chat(int(chat))
            else:
                self.stop(int(chat), int(answer))
