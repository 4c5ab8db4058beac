"""Running a background job (an endless loop) in a test until it has done enough, with the log lines it wrote."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from loguru import logger


async def run_until(job: Coroutine[Any, Any, None], done: asyncio.Event, *, level: str = "INFO") -> list[str]:
    """Run ``job`` as a task until ``done`` is set (at most 5 s), then cancel it. Returns the log lines written
    meanwhile at ``level`` and above, as "LEVEL message" with any traceback."""
    lines: list[str] = []
    sink = logger.add(lines.append, format="{level} {message}{exception}", level=level)
    try:
        task = asyncio.create_task(job)
        try:
            await asyncio.wait_for(done.wait(), 5)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        logger.remove(sink)
    return lines
