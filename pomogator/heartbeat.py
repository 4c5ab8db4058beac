"""A heartbeat file that long-running processes keep fresh, for the container HEALTHCHECK."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from loguru import logger

HEARTBEAT_ENV = "POMOGATOR_HEARTBEAT_FILE"
INTERVAL_S = 15.0
STALE_AFTER_S = 90.0


def heartbeat_path() -> Path | None:
    """``POMOGATOR_HEARTBEAT_FILE``, read as the settings are (the environment, then ``.env``)."""
    # Imported here: the console imports this module, and `pomogator --help` loads no pydantic.
    from pomogator.config import read_variable

    value = read_variable(HEARTBEAT_ENV)
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


def mark_starting(path: Path | None = None) -> None:
    """A server starts its heartbeat as it starts: one that never becomes healthy (stuck waiting for the database
    or Telegram) is unhealthy once the heartbeat is stale, not healthy for lack of a file."""
    path = path or heartbeat_path()
    if path is not None:
        try:
            path.touch()
        except OSError as exc:
            logger.warning("Heartbeat file {} not writable: {}", path, exc)


def is_healthy(path: Path | None = None, now: float | None = None) -> bool:
    """No heartbeat file: nothing long-running to judge (a one-shot command). Otherwise it must be fresh: a server
    creates it as it starts (``mark_starting``) and refreshes it once healthy."""
    path = path or heartbeat_path()
    if path is None or not path.exists():
        return True
    return (now or time.time()) - path.stat().st_mtime < STALE_AFTER_S
