"""Marks of recent erasures: a message whose update came before the erasing one was sent before it; the marks are
seen by every instance through Redis and lapse by themselves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from pomogator.bot.erasures import MemoryErasureMarks
from pomogator.bot.redis_erasures import RedisErasureMarks
from pomogator.bot.shared import open_shared_state
from pomogator.config import Settings
from tests.scale.redis_support import REDIS_URL, redis_prefix

CHAT = 501


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    async with redis_prefix() as value:
        yield value


async def test_only_updates_before_the_erasure_are_from_before_it() -> None:
    marks = MemoryErasureMarks()
    assert not await marks.erased_after(CHAT, 10)
    await marks.mark(CHAT, 20)
    assert await marks.erased_after(CHAT, 19)
    assert not await marks.erased_after(CHAT, 21)
    assert not await marks.erased_after(CHAT + 1, 19)


async def test_a_mark_lapses_and_is_swept() -> None:
    marks = MemoryErasureMarks(ttl=0.05)
    await marks.mark(CHAT, 20)
    await asyncio.sleep(0.1)
    assert not await marks.erased_after(CHAT, 19)
    await marks.mark(CHAT + 1, 30)
    assert list(marks._marks) == [CHAT + 1]


async def test_through_redis_every_instance_sees_the_mark_until_it_lapses(prefix: str) -> None:
    one, other = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)
    try:
        # Seconds enough for the checks below on a loaded machine, before the mark lapses.
        erasing = RedisErasureMarks(one, prefix, ttl=3)
        await erasing.mark(CHAT, 20)
        elsewhere = RedisErasureMarks(other, prefix, ttl=3)
        assert await elsewhere.erased_after(CHAT, 19)
        assert not await elsewhere.erased_after(CHAT, 21)
        assert 0 < await other.pttl(f"{prefix}:erased:{CHAT}") <= 3000
        await asyncio.sleep(3.2)
        assert not await elsewhere.erased_after(CHAT, 19)
    finally:
        await one.aclose()
        await other.aclose()


async def test_the_marks_are_shared_through_redis_when_the_instances_share_state(prefix: str) -> None:
    async with open_shared_state(Settings(redis_key_prefix=prefix)) as alone:
        assert isinstance(alone.erasures, MemoryErasureMarks)
    async with (
        open_shared_state(Settings(redis_url=REDIS_URL, redis_key_prefix=prefix)) as one,
        open_shared_state(Settings(redis_url=REDIS_URL, redis_key_prefix=prefix)) as other,
    ):
        await one.erasures.mark(CHAT, 20)
        assert await other.erasures.erased_after(CHAT, 19)
