"""One Redis pub/sub connection per process, handing each channel's messages to the callback registered for it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

RECONNECT_DELAY = 1.0
MAX_RECONNECT_DELAY = 15.0


class Broadcasts:
    """Register callbacks with ``on`` before ``run`` starts; ``run`` listens until cancelled, reconnecting after
    errors. Messages published while the connection is down are lost: users of it must not depend on every one
    (the chat locks look again on their own; a Stop pressed at that moment may not reach its answer)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._handlers: dict[str, Callable[[str], None]] = {}
        self.subscribed = asyncio.Event()

    def on(self, channel: str, handler: Callable[[str], None]) -> None:
        self._handlers[channel] = handler

    async def run(self) -> None:
        if not self._handlers:
            return
        delay = RECONNECT_DELAY
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(*self._handlers)
                    self.subscribed.set()
                    delay = RECONNECT_DELAY
                    async for message in pubsub.listen():
                        self._dispatch(message)
                reason = "connection closed"
            except RedisError as exc:
                reason = str(exc)
            self.subscribed.clear()
            logger.warning("Redis pub/sub lost ({}); reconnecting in {:.0f}s", reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY)

    def _dispatch(self, message: dict[str, object]) -> None:
        if message.get("type") != "message":
            return
        channel, data = message.get("channel"), message.get("data")
        if isinstance(channel, bytes):
            channel = channel.decode()
        if isinstance(data, bytes):
            data = data.decode()
        handler = self._handlers.get(str(channel))
        if handler is None or not isinstance(data, str):
            return
        try:
            handler(data)
        except Exception as exc:
            logger.opt(exception=exc).error("Handling a message on {} failed", channel)
