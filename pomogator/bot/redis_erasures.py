"""Erasure marks every instance sees (``pomogator.bot.erasures``), in Redis; imported only when it is configured."""

from __future__ import annotations

from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from pomogator.bot.erasures import ERASURE_MARK_TTL_S


class RedisErasureMarks:
    """Marks every instance sees, each a key that lapses by itself."""

    def __init__(self, redis: Redis, prefix: str, ttl: int = ERASURE_MARK_TTL_S) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl = ttl

    def _key(self, chat_id: int) -> str:
        return f"{self.prefix}:erased:{chat_id}"

    async def mark(self, chat_id: int, update_id: int) -> None:
        try:
            await self.redis.set(self._key(chat_id), update_id, ex=self.ttl)
        except RedisError as exc:
            # The data is erased all the same; only a message already queued could bring the account back.
            logger.warning("Redis unavailable ({}); the erasure of chat {} is not marked", exc, chat_id)

    async def erased_after(self, chat_id: int, update_id: int) -> bool:
        try:
            value = await self.redis.get(self._key(chat_id))
        except RedisError as exc:
            logger.warning("Redis unavailable ({}); going on as if chat {} was not erased", exc, chat_id)
            return False
        return value is not None and update_id < int(value)
