"""Refused calls are logged rate-limited: the first one a minute in full, the others counted in one line."""

from __future__ import annotations

import asyncio

from loguru import logger

from pomogator.logs.ratelimit import RefusalLog


async def test_a_flood_of_refusals_is_one_line_and_one_summary_per_window() -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, format="{level} {message}", level="DEBUG")
    try:
        refusals = RefusalLog("Telegram webhook calls without the right secret", window=0.2)
        for n in range(50):
            refusals.refused("Call {} refused", n)
        assert lines == ["WARNING Call 0 refused\n"]
        await asyncio.sleep(0.3)  # the window ends: the summary is written without waiting for another refusal
        assert lines[1:] == [
            "WARNING Telegram webhook calls without the right secret: 49 more refused in the last minute, "
            "not logged one by one\n"
        ]
        refusals.refused("Call {} refused", 50)  # a new window
        refusals.refused("Call {} refused", 51)
        refusals.flush()  # at shutdown, before the window ends
        assert lines[2:] == [
            "WARNING Call 50 refused\n",
            "WARNING Telegram webhook calls without the right secret: 1 more refused in the last minute, "
            "not logged one by one\n",
        ]
        await asyncio.sleep(0.3)
        assert len(lines) == 4  # the flushed window's timer wrote nothing more
    finally:
        logger.remove(sink)


async def test_a_quiet_window_writes_no_summary() -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, format="{message}", level="DEBUG")
    try:
        refusals = RefusalLog("YooKassa notifications from untrusted addresses", window=0.05)
        refusals.refused("first")
        await asyncio.sleep(0.1)
        refusals.refused("second")
        refusals.flush()
        assert lines == ["first\n", "second\n"]
    finally:
        logger.remove(sink)
