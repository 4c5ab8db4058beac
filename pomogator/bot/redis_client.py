"""The Redis client of the bot's shared state (``pomogator.bot.shared``), made to give up quickly while Redis is away.

Every use of Redis in the bot has a way on without it (turns kept per instance, stops on this instance only, no
conversation state), so a Redis that cannot be reached must cost a message as little time as possible. A host that
does not answer at all (down, or cut off by the network) would make each command wait for its timeout, and one
message makes several (its place in the chat's queue, its turn, the Stop mark, the conversation state...). So:

* a connection gets ``CONNECT_TIMEOUT_S`` and a command ``COMMAND_TIMEOUT_S``, ample for a server on the same
  network, and nothing is retried by the client;
* once a connection could not be made, none is tried for ``RETRY_AFTER_S``: a command that needs one fails at once
  with ``ConnectionError`` (handled as Redis being down, like any other), and the first one after that tries again.

When the host goes silent, the message that finds an open connection dead waits for a command timeout and for the
attempt to replace it (a connect timeout, or a command timeout again when the connection is accepted and its greeting
not answered). The messages after it wait for nothing until Redis is tried again; then one of them waits for that
attempt. Options in the URL's query (``?socket_connect_timeout=3``) take precedence over these.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

CONNECT_TIMEOUT_S = 1.0
COMMAND_TIMEOUT_S = 2.0
RETRY_AFTER_S = 5.0
# An idle connection is checked with a PING before it is used again after this long.
HEALTH_CHECK_S = 30


class FailFastPool(ConnectionPool):
    """A connection pool that, for ``retry_after`` seconds after a connection could not be made, refuses to try
    another (a connection still open is used as usual)."""

    def __init__(
        self, *args: Any, retry_after: float = RETRY_AFTER_S, clock: Callable[[], float] = time.monotonic, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after
        self._clock = clock
        self._unreachable_until = 0.0

    @property
    def unreachable(self) -> bool:
        """Whether connections are not tried now: one could not be made less than ``retry_after`` ago."""
        return self._clock() < self._unreachable_until

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        if self.unreachable and not connection.is_connected:
            raise RedisConnectionError(f"Redis could not be reached less than {self.retry_after:g}s ago; not tried yet")
        try:
            await super().ensure_connection(connection)
        except RedisError:
            self._unreachable_until = self._clock() + self.retry_after
            raise


def connect_redis(url: str, *, retry_after: float = RETRY_AFTER_S) -> Redis:
    """A client of the Redis at ``url`` that fails fast while it is unreachable (see the module docstring). Nothing
    is connected yet; ``aclose()`` closes its connections."""
    pool = FailFastPool.from_url(
        url,
        retry_after=retry_after,
        socket_timeout=COMMAND_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=HEALTH_CHECK_S,
    )
    return Redis.from_pool(pool)
