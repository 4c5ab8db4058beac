"""Which instance tells a group that the bot works in private chats: a claim in Redis while one sends the notice,
kept once it went out, given up when Telegram refused it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from pomogator.bot.middlewares.private_only import Claimed
from pomogator.bot.redis_notices import GROUP_NOTICE_LEASE_S, GROUP_NOTICE_TTL_S, RedisGroupNotices
from tests.scale.redis_support import REDIS_URL, redis_prefix


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_group_is_marked_told_only_once_its_notice_went_out(redis: Redis) -> None:
    async with redis_prefix() as prefix:
        a, b = RedisGroupNotices(redis, prefix), RedisGroupNotices(redis, prefix)
        key = f"{prefix}:group-noticed:-100"
        assert await a(-100) is Claimed.TELL
        assert await b(-100) is Claimed.BUSY  # a is telling the group
        assert 0 < await redis.ttl(key) <= GROUP_NOTICE_LEASE_S
        await a.failed(-100)  # Telegram refused it: the group's next message tries again
        assert await b(-100) is Claimed.TELL
        await b.told(-100)
        assert await a(-100) is Claimed.TOLD and await b(-100) is Claimed.TOLD
        assert await redis.ttl(key) > GROUP_NOTICE_LEASE_S
        assert await redis.ttl(key) <= GROUP_NOTICE_TTL_S
        assert await a(-101) is Claimed.TELL  # other groups are their own
