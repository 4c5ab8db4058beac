"""A Redis key prefix of a test's own on the shared test server, removed afterwards."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

# Not POMOGATOR_*: the shared conftest clears those.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@contextlib.asynccontextmanager
async def redis_prefix() -> AsyncIterator[str]:
    """A fresh key prefix; every key under it is deleted at exit. Skips the test when Redis does not answer."""
    prefix = f"pomogator-test-{uuid.uuid4().hex[:12]}"
    client = Redis.from_url(REDIS_URL)
    try:
        try:
            await client.ping()
        except RedisError as exc:
            pytest.skip(f"Redis at {REDIS_URL} does not answer: {exc}")
        yield prefix
    finally:
        with contextlib.suppress(RedisError):
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
            if keys:
                await client.delete(*keys)
        await client.aclose()
