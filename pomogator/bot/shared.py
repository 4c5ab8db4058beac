"""What bot instances share: in this process alone, or in Redis when ``POMOGATOR_REDIS_URL`` is set.

With Redis any instance can take any update (webhook mode behind a load balancer):

* the conversation state (waiting for a role text) is aiogram's ``RedisStorage``, so ``/role`` answered on one
  instance is completed on another (while Redis is away, read as none: ``pomogator.bot.redis_fsm``);
* a chat's messages take turns through ``RedisChatLocks`` (one at a time, in update-id order; see its module for
  the exact guarantee); the polling bot, the only instance by Telegram's rules, keeps its turns in memory;
* the Stop button reaches the answer on whichever instance streams it (``RedisStopRegistry``);
* a group is told once that the bot works in private chats, not once per instance;
* a message sent before its person's erasure and still queued is dropped by whichever instance takes it
  (``pomogator.bot.erasures``);
* an update Telegram delivers twice (it retries when it did not see our answer in time) is handled once; without
  Redis a webhook-mode process remembers the last ``RECENT_UPDATES`` update ids it took itself.

Each of these goes on without Redis while it cannot be reached, and the client gives up on it quickly meanwhile
(``pomogator.bot.redis_client``).

Not shared, by design: the flood guard counts per instance (N instances let a user through N times as often), and
albums or split long texts are gathered per instance — a part that reaches another instance than the first part
is answered as a request of its own (never lost, but the album is then answered in pieces).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiogram.fsm.storage.base import BaseStorage
from loguru import logger

from pomogator.bot.answer import StopRegistry
from pomogator.bot.erasures import ErasureMarks, MemoryErasureMarks
from pomogator.bot.fsm_memory import SparseMemoryStorage
from pomogator.bot.middlewares import ChatLocks, MemoryChatLocks
from pomogator.bot.middlewares.private_only import GroupNoticeClaim
from pomogator.config import Settings

if TYPE_CHECKING:
    from pomogator.bot.redis_locks import RedisChatLocks

# Conversation state nobody finished (a /role never answered) is forgotten after a week.
STATE_TTL_S = 7 * 24 * 3600
# Telegram gives up on an update after a day; remembering delivered ids that long catches every retry.
DELIVERED_TTL_S = 24 * 3600
# Without Redis: update ids a webhook-mode process remembers (~100 bytes each). Telegram delivers an update again
# soon after a delivery it did not see answered; at 40 updates a second this covers the last eight minutes.
RECENT_UPDATES = 20_000
# How long start-up waits for the pub/sub subscription before it goes on (it is retried in the background).
SUBSCRIBE_WAIT_S = 5.0


@dataclass
class SharedState:
    storage: BaseStorage
    chat_locks: ChatLocks
    stops: StopRegistry
    claim_group_notice: GroupNoticeClaim | None = None
    erasures: ErasureMarks = field(default_factory=MemoryErasureMarks)
    claim_update: Callable[[int], Awaitable[bool]] | None = None
    # The same object as ``chat_locks`` when turns are shared through Redis.
    redis_turns: RedisChatLocks | None = None

    async def first_delivery(self, update_id: int) -> bool:
        """False when this update was already taken by some instance (Telegram delivered it again)."""
        return True if self.claim_update is None else await self.claim_update(update_id)

    async def arrived(self, chat_id: int, update_id: int) -> None:
        """A message reached this instance: take its place in the chat's queue before Telegram sends the next."""
        if self.redis_turns is not None:
            await self.redis_turns.enqueue(chat_id, update_id)

    async def finished(self, chat_id: int, update_id: int) -> None:
        """The message is done with; frees its place if it never took its turn (dropped on the way)."""
        if self.redis_turns is not None:
            await self.redis_turns.leave(chat_id, update_id)


class RecentUpdates:
    """The update ids this process took lately, oldest forgotten first."""

    def __init__(self, size: int = RECENT_UPDATES) -> None:
        self._size = size
        self._order: deque[int] = deque()
        self._seen: set[int] = set()

    async def claim(self, update_id: int) -> bool:
        """True the first time ``update_id`` is seen."""
        if update_id in self._seen:
            return False
        self._seen.add(update_id)
        self._order.append(update_id)
        if len(self._order) > self._size:
            self._seen.discard(self._order.popleft())
        return True


@contextlib.asynccontextmanager
async def open_shared_state(settings: Settings) -> AsyncIterator[SharedState]:
    if not settings.redis_url:
        # Polling never gets an update twice (the offset moves past it); a webhook delivery may come again.
        recent = RecentUpdates().claim if settings.webhook_mode else None
        yield SharedState(SparseMemoryStorage(), MemoryChatLocks(), StopRegistry(), claim_update=recent)
        return

    from aiogram.fsm.storage.base import DefaultKeyBuilder
    from aiogram.fsm.storage.redis import RedisStorage
    from redis.exceptions import RedisError

    from pomogator.bot.broadcasts import Broadcasts
    from pomogator.bot.redis_client import connect_redis
    from pomogator.bot.redis_erasures import RedisErasureMarks
    from pomogator.bot.redis_fsm import OutageTolerantStorage
    from pomogator.bot.redis_locks import RedisChatLocks
    from pomogator.bot.redis_notices import RedisGroupNotices
    from pomogator.bot.redis_stops import RedisStopRegistry

    prefix = settings.redis_key_prefix
    redis = connect_redis(settings.redis_url)

    async def claim(key: str, ttl: int) -> bool:
        try:
            return bool(await redis.set(key, "1", nx=True, ex=ttl))
        except RedisError as exc:
            logger.warning("Redis unavailable ({}); going on as if first", exc)
            return True

    async def claim_update(update_id: int) -> bool:
        return await claim(f"{prefix}:delivered:{update_id}", DELIVERED_TTL_S)

    broadcasts = Broadcasts(redis)
    turns = RedisChatLocks(redis, prefix, settings.redis_lock_ttl_seconds, broadcasts)
    shared = SharedState(
        storage=OutageTolerantStorage(
            RedisStorage(
                redis,
                key_builder=DefaultKeyBuilder(prefix=f"{prefix}:fsm"),
                state_ttl=STATE_TTL_S,
                data_ttl=STATE_TTL_S,
            )
        ),
        chat_locks=turns,
        stops=RedisStopRegistry(redis, prefix, broadcasts),
        claim_group_notice=RedisGroupNotices(redis, prefix),
        erasures=RedisErasureMarks(redis, prefix),
        claim_update=claim_update,
        redis_turns=turns,
    )
    listener = asyncio.create_task(broadcasts.run())
    try:
        await redis.ping()
        # Stops and released turns published from now on reach this instance.
        async with asyncio.timeout(SUBSCRIBE_WAIT_S):
            await broadcasts.subscribed.wait()
    except (RedisError, TimeoutError) as exc:
        logger.warning("Redis does not answer yet ({}); going on, it is retried on every use", exc)
    try:
        yield shared
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await redis.aclose()
