"""Per-chat turns in Redis, so that several bot instances (webhook mode) never handle two messages of a chat at once.

What is guaranteed:

* **One at a time.** A chat's turn is a Redis key set with ``NX``; only its holder handles a message of that chat.
  The holder renews it every third of ``ttl``; if the holder's process dies, the turn lapses after ``ttl`` and the
  chat goes on (the message that instance was handling is lost with it). A holder that cannot renew for longer
  than ``ttl`` (Redis unreachable from it) loses the turn as well, and the next message may start meanwhile.
* **Order.** Messages queue in a sorted set scored by the update id, which Telegram assigns in the order the
  messages were sent, and the turn goes to the lowest one queued. The webhook takes a message's place with
  ``enqueue`` before it answers Telegram, so updates of a chat that Telegram delivers one after another are
  handled in that order, whichever instances receive them. Updates delivered at the same time are
  ordered by id among themselves; only an update that reaches an instance after a later one of its chat already
  got its turn (a redelivery, say) runs after it. A place nobody renews (its instance died) is skipped after
  ``ttl``.

Waiters are woken through one pub/sub channel per process (see ``Broadcasts``) and also look again every
``poll`` seconds, so a lost notification costs a moment, never the turn. When Redis cannot be reached the lock
falls back to this process's own queue: messages are still answered, in order per instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from pomogator.bot.broadcasts import Broadcasts
from pomogator.bot.middlewares.chat_order import MemoryChatLocks

# KEYS: queue, leases, turn. ARGV: token, order, ttl (ms). 1 when the caller now holds the turn.
_TAKE = """
local queue, leases, turn = KEYS[1], KEYS[2], KEYS[3]
local token, order, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZADD', queue, 'NX', order, token)
redis.call('HSET', leases, token, now + ttl)
redis.call('PEXPIRE', queue, ttl * 2)
redis.call('PEXPIRE', leases, ttl * 2)
while true do
  local head = redis.call('ZRANGE', queue, 0, 0)[1]
  if head == token then break end
  if tonumber(redis.call('HGET', leases, head) or '0') >= now then return 0 end
  redis.call('ZREM', queue, head)
  redis.call('HDEL', leases, head)
end
if not redis.call('SET', turn, token, 'NX', 'PX', ttl) then return 0 end
redis.call('ZREM', queue, token)
redis.call('HDEL', leases, token)
return 1
"""

# KEYS: queue, leases. ARGV: token, order, ttl (ms). Takes a place in the queue (kept if already there).
_ENQUEUE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], 'NX', tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], now + ttl)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
redis.call('PEXPIRE', KEYS[2], ttl * 2)
return 1
"""

# KEYS: queue, leases, turn. ARGV: token, channel, chat id. Leaves the queue and gives the turn back if held.
_LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local held = redis.call('GET', KEYS[3]) == ARGV[1]
if held then redis.call('DEL', KEYS[3]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return held and 1 or 0
"""

# KEYS: turn. ARGV: token, ttl (ms). 1 while the caller still holds the turn.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

DEFAULT_POLL = 0.5


class RedisChatLocks:
    """A ``ChatLocks`` shared by every instance that uses the same Redis and key prefix (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        ttl: float,
        broadcasts: Broadcasts | None = None,
        *,
        poll: float = DEFAULT_POLL,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_ms = max(int(ttl * 1000), 100)
        self._poll = min(poll, ttl / 3)
        self._channel = f"{prefix}:turn-released"
        self._enqueue = redis.register_script(_ENQUEUE)
        self._take = redis.register_script(_TAKE)
        self._leave = redis.register_script(_LEAVE)
        self._renew = redis.register_script(_RENEW)
        self._waiters: dict[int, set[asyncio.Event]] = {}
        # Places taken by ``enqueue`` whose message has not asked for its turn yet.
        self._placed: set[str] = set()
        self._fallback = MemoryChatLocks()
        if broadcasts is not None:
            broadcasts.on(self._channel, self._wake)

    def hold(self, chat_id: int, order: int = 0) -> AbstractAsyncContextManager[None]:
        return self._hold(chat_id, order)

    async def enqueue(self, chat_id: int, order: int) -> None:
        """Take the place of update ``order`` in its chat's queue now, ahead of any later update that asks for its
        turn before this one does (``hold`` with the same ``order`` then uses it). Call ``leave`` when the update
        is done, in case it never asked (it was dropped before the queue)."""
        token = _token(order)
        try:
            await self._enqueue(keys=self._keys(chat_id)[:2], args=[token, order, self._ttl_ms])
        except RedisError as exc:
            logger.warning("Could not queue a message of chat {} on arrival: {}", chat_id, exc)
            return
        self._placed.add(token)

    async def leave(self, chat_id: int, order: int) -> None:
        """Give up the place ``enqueue`` took, unless the update has asked for its turn since."""
        token = _token(order)
        if token in self._placed:
            self._placed.discard(token)
            await self._give_back(chat_id, token, self._keys(chat_id))

    def _keys(self, chat_id: int) -> list[str]:
        # The hash tag keeps a chat's keys in one slot, so the scripts also work on a Redis Cluster.
        base = f"{self._prefix}:turn:{{{chat_id}}}"
        return [f"{base}:queue", f"{base}:leases", base]

    def _wake(self, data: str) -> None:
        with contextlib.suppress(ValueError):
            for event in self._waiters.get(int(data), ()):
                event.set()

    @contextlib.asynccontextmanager
    async def _hold(self, chat_id: int, order: int) -> AsyncIterator[None]:
        token = _token(order)
        self._placed.discard(token)
        keys = self._keys(chat_id)
        try:
            await self._acquire(chat_id, order, token, keys)
        except RedisError as exc:
            logger.warning("Redis unavailable ({}); chat {} is ordered within this instance only", exc, chat_id)
            async with self._fallback.hold(chat_id):
                yield
            return
        renewal = asyncio.create_task(self._keep(chat_id, token, keys))
        try:
            yield
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            await self._give_back(chat_id, token, keys)

    async def _acquire(self, chat_id: int, order: int, token: str, keys: list[str]) -> None:
        waker = asyncio.Event()
        waiters = self._waiters.setdefault(chat_id, set())
        waiters.add(waker)
        try:
            while True:
                # Cleared before asking, so a release announced while the answer travels back still wakes us.
                waker.clear()
                if await self._take(keys=keys, args=[token, order, self._ttl_ms]):
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waker.wait(), self._poll)
        except BaseException:
            # Cancelled or failed, possibly after Redis granted the turn: leave the queue and give it back.
            await self._give_back(chat_id, token, keys)
            raise
        finally:
            waiters.discard(waker)
            if not waiters and self._waiters.get(chat_id) is waiters:
                del self._waiters[chat_id]

    async def _keep(self, chat_id: int, token: str, keys: list[str]) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                if not await self._renew(keys=keys[2:], args=[token, self._ttl_ms]):
                    logger.warning("The turn of chat {} lapsed while its message was being handled", chat_id)
                    return
            except RedisError as exc:
                logger.warning("Could not renew the turn of chat {}: {}", chat_id, exc)

    async def _give_back(self, chat_id: int, token: str, keys: list[str]) -> None:
        try:
            await self._leave(keys=keys, args=[token, self._channel, chat_id])
        except RedisError as exc:
            logger.warning("Could not release the turn of chat {} (it lapses by itself): {}", chat_id, exc)


def _token(order: int) -> str:
    """An update's place in the queue: the same on every instance, so that ``enqueue`` and ``hold`` share it."""
    return f"update-{order}" if order else uuid.uuid4().hex
