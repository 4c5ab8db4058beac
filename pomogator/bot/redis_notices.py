"""Which bot instance tells a group that the bot works in private chats, when several share Redis."""

from __future__ import annotations

from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from pomogator.bot.flood_wait import MAX_WAIT_S
from pomogator.bot.middlewares.private_only import Claimed

GROUP_NOTICE_TTL_S = 365 * 24 * 3600
# How long an instance telling a group holds the claim: longer than a send takes at the worst (the flood waits it
# may sit out), so that no other instance tells the group meanwhile.
GROUP_NOTICE_LEASE_S = int(3 * MAX_WAIT_S)
TOLD = "told"


class RedisGroupNotices:
    """``pomogator.bot.middlewares.private_only.GroupNoticeClaim`` in Redis: one key per group, held while an
    instance sends the notice, kept for a year once it went out, deleted when Telegram refused it. While Redis
    does not answer, an instance goes on as if it were the first."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _key(self, chat_id: int) -> str:
        return f"{self._prefix}:group-noticed:{chat_id}"

    async def __call__(self, chat_id: int) -> Claimed:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(self._key(chat_id), "telling", nx=True, ex=GROUP_NOTICE_LEASE_S)
                pipe.get(self._key(chat_id))
                taken, value = await pipe.execute()
        except RedisError as exc:
            logger.warning("Redis unavailable ({}); going on as if first", exc)
            return Claimed.TELL
        if taken:
            return Claimed.TELL
        return Claimed.TOLD if value == TOLD.encode() else Claimed.BUSY

    async def told(self, chat_id: int) -> None:
        try:
            await self._redis.set(self._key(chat_id), TOLD, ex=GROUP_NOTICE_TTL_S)
        except RedisError as exc:
            logger.warning("Redis unavailable ({}); the group may be told again", exc)

    async def failed(self, chat_id: int) -> None:
        try:
            await self._redis.delete(self._key(chat_id))
        except RedisError as exc:
            logger.warning("Redis unavailable ({}); the group is told again once the claim lapses", exc)
