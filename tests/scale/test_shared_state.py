"""What bot instances share through Redis, with two instances' shared state in one test process."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiogram.fsm.storage.base import StorageKey
from redis.asyncio import Redis

from pomogator.bot.fsm_memory import SparseMemoryStorage
from pomogator.bot.middlewares import MemoryChatLocks
from pomogator.bot.middlewares.private_only import Claimed
from pomogator.bot.redis_stops import RedisStopRegistry
from pomogator.bot.shared import RecentUpdates, SharedState, open_shared_state
from pomogator.config import Settings
from tests.conftest import make_settings
from tests.scale.redis_support import REDIS_URL, redis_prefix

TTL = 1.0


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    async with redis_prefix() as value:
        yield value


@pytest.fixture
def settings(prefix: str) -> Settings:
    return make_settings(redis_url=REDIS_URL, redis_key_prefix=prefix, redis_lock_ttl_seconds=TTL)


@contextlib.asynccontextmanager
async def two_instances(settings: Settings) -> AsyncIterator[tuple[SharedState, SharedState]]:
    async with open_shared_state(settings) as a, open_shared_state(settings) as b:
        yield a, b


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


def queue_key(prefix: str, chat: int) -> str:
    return f"{prefix}:turn:{{{chat}}}:queue"


async def wait_for(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait up to 5 s for ``predicate()``, asking Redis every 10 ms."""
    for _ in range(500):
        if await predicate():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{what}: not within 5 s")


async def test_without_redis_everything_stays_in_the_process() -> None:
    async with open_shared_state(make_settings()) as shared:
        assert isinstance(shared.chat_locks, MemoryChatLocks)
        assert isinstance(shared.storage, SparseMemoryStorage)
        assert await shared.first_delivery(1) and await shared.first_delivery(1)  # polling: never delivered twice
        assert shared.claim_group_notice is None


async def test_without_redis_a_webhook_process_handles_a_redelivered_update_once() -> None:
    async with open_shared_state(
        make_settings(telegram_webhook_secret="s3cret-0123456789abcdefghijklmnopqrstuv")
    ) as shared:
        assert await shared.first_delivery(1)
        assert not await shared.first_delivery(1)
        assert await shared.first_delivery(2)


async def test_recent_updates_forget_the_oldest_first() -> None:
    recent = RecentUpdates(size=2)
    assert [await recent.claim(i) for i in (1, 2, 3)] == [True, True, True]
    assert not await recent.claim(3) and not await recent.claim(2)
    assert await recent.claim(1)  # forgotten: the oldest of three with room for two


async def test_a_chat_takes_turns_across_instances_in_update_order(
    settings: Settings, prefix: str, redis: Redis
) -> None:
    chat = 101
    order: list[int] = []
    inside = 0
    most_inside = 0
    async with two_instances(settings) as (a, b):

        async def handle(shared: SharedState, update_id: int) -> None:
            nonlocal inside, most_inside
            async with shared.chat_locks.hold(chat, update_id):
                inside += 1
                most_inside = max(most_inside, inside)
                order.append(update_id)
                await asyncio.sleep(0.05)
                inside -= 1

        first = asyncio.Event()

        async def hold_first() -> None:
            async with a.chat_locks.hold(chat, 1):
                first.set()
                # Later updates queue meanwhile, on both instances, arriving out of order.
                await wait_for(lambda: _queued(redis, prefix, chat, 3), "three waiters")
                order.append(1)

        holder = asyncio.create_task(hold_first())
        await first.wait()
        waiters = [
            asyncio.create_task(handle(b, 5)),
            asyncio.create_task(handle(a, 3)),
            asyncio.create_task(handle(b, 4)),
        ]
        await asyncio.gather(holder, *waiters)
    assert order == [1, 3, 4, 5]
    assert most_inside == 1
    assert await redis.keys(f"{prefix}:turn:*") == []


async def _queued(redis: Redis, prefix: str, chat: int, n: int) -> bool:
    return int(await redis.zcard(queue_key(prefix, chat))) == n


async def test_a_place_taken_on_arrival_keeps_the_order_of_delivery(
    settings: Settings, prefix: str, redis: Redis
) -> None:
    chat = 104
    order: list[int] = []
    async with two_instances(settings) as (a, b):
        # Update 5 reached instance A and was acknowledged, but has not asked for its turn yet when 6 does on B.
        await a.arrived(chat, 5)
        later = asyncio.create_task(_record(b, chat, 6, order))
        await wait_for(lambda: _queued(redis, prefix, chat, 2), "both queued")
        await _record(a, chat, 5, order)
        await later
        # A message dropped before the queue (a group message, an album part) gives its place back.
        await a.arrived(chat, 7)
        await a.finished(chat, 7)
        assert await redis.zcard(queue_key(prefix, chat)) == 0
        async with asyncio.timeout(2), b.chat_locks.hold(chat, 8):
            pass
    assert order == [5, 6]


async def _record(shared: SharedState, chat: int, update_id: int, order: list[int]) -> None:
    async with shared.chat_locks.hold(chat, update_id):
        order.append(update_id)


async def test_the_turn_of_a_dead_instance_lapses(settings: Settings, prefix: str, redis: Redis) -> None:
    chat = 102
    # What a killed instance leaves behind: the turn it held, and a place in the queue it no longer renews.
    await redis.set(f"{prefix}:turn:{{{chat}}}", "dead-holder", px=int(TTL * 1000))
    await redis.zadd(queue_key(prefix, chat), {"dead-waiter": 1})
    await redis.hset(f"{prefix}:turn:{{{chat}}}:leases", "dead-waiter", 0)
    async with open_shared_state(settings) as shared:
        async with asyncio.timeout(TTL * 5):
            async with shared.chat_locks.hold(chat, 2):
                assert await redis.get(f"{prefix}:turn:{{{chat}}}") not in (None, "dead-holder")
        assert await redis.zcard(queue_key(prefix, chat)) == 0


async def test_a_cancelled_waiter_leaves_the_queue(settings: Settings, prefix: str, redis: Redis) -> None:
    chat = 103
    async with two_instances(settings) as (a, b):
        release = asyncio.Event()

        async def hold() -> None:
            async with a.chat_locks.hold(chat, 1):
                await release.wait()

        holder = asyncio.create_task(hold())
        await wait_for(lambda: _exists(redis, f"{prefix}:turn:{{{chat}}}"), "the turn taken")
        waiter = asyncio.create_task(_enter(b, chat, 2))
        await wait_for(lambda: _queued(redis, prefix, chat, 1), "a waiter")
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        assert await redis.zcard(queue_key(prefix, chat)) == 0
        release.set()
        await holder
        # The next one gets the turn right away.
        async with asyncio.timeout(2), b.chat_locks.hold(chat, 3):
            pass


async def _exists(redis: Redis, key: str) -> bool:
    return bool(await redis.exists(key))


async def _enter(shared: SharedState, chat: int, order: int) -> None:
    async with shared.chat_locks.hold(chat, order):
        pass


async def test_without_a_reachable_redis_a_chat_is_still_ordered_within_the_instance(prefix: str) -> None:
    settings = make_settings(redis_url="redis://127.0.0.1:9/0", redis_key_prefix=prefix)
    async with open_shared_state(settings) as shared:
        order: list[int] = []

        async def handle(update_id: int) -> None:
            async with shared.chat_locks.hold(7, update_id):
                order.append(update_id)
                await asyncio.sleep(0.01)

        await asyncio.gather(handle(1), handle(2))
        assert sorted(order) == [1, 2]
        # Going on as the first: nothing is skipped because Redis cannot tell.
        assert await shared.first_delivery(5)


async def test_stop_reaches_the_answer_streaming_on_another_instance(settings: Settings) -> None:
    async with two_instances(settings) as (a, b):
        async with a.stops.streaming(5, 77) as stop:
            assert await b.stops.request_stop(5, 77)
            async with asyncio.timeout(5):
                await stop.wait()
            # Pressed again, anywhere: already stopping.
            assert not await b.stops.request_stop(5, 77)
            assert not await a.stops.request_stop(5, 77)
        async with a.stops.streaming(5, 78):
            pass
        assert not await b.stops.request_stop(5, 78)


async def test_an_answer_the_model_has_written_whole_is_no_longer_stopped_from_any_instance(settings: Settings) -> None:
    async with two_instances(settings) as (a, b), a.stops.streaming(5, 79) as stop:
        a.stops.written(5, 79)
        assert isinstance(a.stops, RedisStopRegistry)
        # Its mark leaves Redis in the background.
        await asyncio.wait(set(a.stops._unmarking), timeout=5)
        assert not await b.stops.request_stop(5, 79)
        assert not await a.stops.request_stop(5, 79)
        assert not await b.stops.request_stop_chat(5)
        await asyncio.sleep(0.1)  # a stop published anyway would arrive meanwhile
        assert not stop.is_set()


async def test_a_chat_wide_stop_reaches_every_answer_of_the_chat_on_every_instance(settings: Settings) -> None:
    async with (
        two_instances(settings) as (a, b),
        a.stops.streaming(5, 1) as first,
        b.stops.streaming(5, 2) as second,
        a.stops.streaming(6, 3) as other_chat,
    ):
        await b.stops.request_stop_chat(5)
        async with asyncio.timeout(5):
            await first.wait()
            await second.wait()
        assert not other_chat.is_set()


async def test_a_chat_wide_stop_tells_whether_an_answer_was_streaming_anywhere(settings: Settings) -> None:
    async with two_instances(settings) as (a, b):
        assert not await b.stops.request_stop_chat(5)
        async with a.stops.streaming(5, 1) as streaming, a.stops.streaming(6, 2):
            assert await b.stops.request_stop_chat(5)  # streamed by the other instance
            async with asyncio.timeout(5):
                await streaming.wait()
            # Stopping already: asked again, on either instance, there is nothing left to stop.
            assert not await b.stops.request_stop_chat(5)
            assert not await a.stops.request_stop_chat(5)
        async with b.stops.streaming(5, 3):
            assert await b.stops.request_stop_chat(5)  # streamed here


async def test_a_chat_wide_stop_reads_only_its_chats_marks_and_not_a_dead_instances(
    settings: Settings, prefix: str
) -> None:
    """The chat's marks are one hash: a chat-wide stop takes them in one command (no scan of the keyspace), and a
    mark whose time has passed (its instance died while the chat went on) is no answer to stop."""
    redis = Redis.from_url(REDIS_URL)
    try:
        async with two_instances(settings) as (a, b):
            async with a.stops.streaming(5, 1):
                assert await redis.hlen(f"{prefix}:streaming:5") == 1
                assert 0 < await redis.ttl(f"{prefix}:streaming:5") <= 3600
            assert not await redis.exists(f"{prefix}:streaming:5")
            await redis.hset(f"{prefix}:streaming:5", "9", str(time.time() - 1))
            assert not await b.stops.request_stop_chat(5)
            assert not await redis.exists(f"{prefix}:streaming:5")
    finally:
        await redis.aclose()


async def test_a_chat_wide_stop_reaches_a_turn_before_its_answer_streams_on_another_instance(
    settings: Settings,
) -> None:
    async with two_instances(settings) as (a, b):
        async with a.stops.turn(5) as turn:
            # A file being read there: the answer has not started, yet there is something to stop.
            assert await b.stops.request_stop_chat(5)
            async with asyncio.timeout(5):
                await turn.wait()
            assert a.stops.turn_event(5) is turn
            assert not await b.stops.request_stop_chat(5)  # stopping already
        assert a.stops.turn_event(5) is None
        assert not await b.stops.request_stop_chat(5)
        # Once its answer streams, the turn is no longer something to stop, on any instance.
        async with a.stops.turn(5):
            await a.stops.end_turn(5)
            assert a.stops.turn_event(5) is None
            assert not await b.stops.request_stop_chat(5)


async def test_group_notice_update_delivery_and_conversation_state_are_shared(settings: Settings) -> None:
    async with two_instances(settings) as (a, b):
        assert a.claim_group_notice is not None and b.claim_group_notice is not None
        assert await a.claim_group_notice(-100) is Claimed.TELL
        assert await b.claim_group_notice(-100) is Claimed.BUSY
        assert await b.first_delivery(900)
        assert not await a.first_delivery(900)
        key = StorageKey(bot_id=1, chat_id=5, user_id=5)
        await a.storage.set_state(key, "RoleForm:waiting")
        assert await b.storage.get_state(key) == "RoleForm:waiting"
