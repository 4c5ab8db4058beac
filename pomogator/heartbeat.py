"""A heartbeat file that long-running processes keep fresh, for the container HEALTHCHECK."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from loguru import logger

HEARTBEAT_ENV = "POMOGATOR_HEARTBEAT_FILE"
INTERVAL_S = 15.0
STALE_AFTER_S = 90.0


def heartbeat_path() -> Path | None:
    value = os.environ.get(HEARTBEAT_ENV)
    return Path(value) if value else None


async def keep_heartbeat(check: Callable[[], Awaitable[bool]], path: Path | None = None) -> None:
    """Touch the heartbeat file every few seconds while ``check()`` says the process is healthy (runs forever)."""
    path = path or heartbeat_path()
    if path is None:
        return
    try:
        while True:
            try:
                healthy = await check()
            except Exception:
                healthy = False
            if healthy:
                await asyncio.to_thread(path.touch)
            else:
                logger.warning("Health check failed; heartbeat not refreshed")
            await asyncio.sleep(INTERVAL_S)
    finally:
        path.unlink(missing_ok=True)


def is_healthy(path: Path | None = None, now: float | None = None) -> bool:
    """No heartbeat file: nothing long-running to judge (a one-shot command). Otherwise it must be fresh."""
    path = path or heartbeat_path()
    if path is None or not path.exists():
        return True
    return (now or time.time()) - path.stat().st_mtime < STALE_AFTER_S
