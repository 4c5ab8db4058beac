"""Marks of recent erasures: a message whose update came before the erasing one was sent before it; the marks are
seen by every instance through Redis and lapse by themselves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiogram.fsm.storage.base import DefaultKeyBuilder
from aiogram.fsm.storage.redis import RedisStorage
from redis.asyncio import Redis

from pomogator.bot.erasures import MemoryErasureMarks, RedisErasureMarks, erasure_marks
from pomogator.bot.fsm_memory import SparseMemoryStorage
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
        erasing = RedisErasureMarks(one, prefix, ttl=1)
        await erasing.mark(CHAT, 20)
        elsewhere = RedisErasureMarks(other, prefix, ttl=1)
        assert await elsewhere.erased_after(CHAT, 19)
        assert not await elsewhere.erased_after(CHAT, 21)
        assert 0 < await other.ttl(f"{prefix}:erased:{CHAT}") <= 1
        await asyncio.sleep(1.2)
        assert not await elsewhere.erased_after(CHAT, 19)
    finally:
        await one.aclose()
        await other.aclose()


async def test_the_marks_are_kept_where_the_conversation_state_is(prefix: str) -> None:
    assert isinstance(erasure_marks(SparseMemoryStorage(), prefix), MemoryErasureMarks)
    redis = Redis.from_url(REDIS_URL)
    try:
        storage = RedisStorage(redis, key_builder=DefaultKeyBuilder(prefix=f"{prefix}:fsm"))
        marks = erasure_marks(storage, prefix)
        assert isinstance(marks, RedisErasureMarks)
        assert marks.redis is redis
    finally:
        await redis.aclose()
