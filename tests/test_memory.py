"""Free heap memory goes back to the system (``pomogator.memory``), and the servers keep doing it."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from pomogator import memory
from pomogator.bot import runner
from pomogator.container import build_services
from tests.background import run_until
from tests.conftest import make_settings
from tests.fakes.telegram_server import FakeTelegram

# In a process of its own: a heap fragmented the way a burst of long contexts leaves it, trimmed once.
FRAGMENTED_HEAP = textwrap.dedent(
    """
    from pomogator.memory import malloc_trim

    def rss_mib():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    freed = bytes(16 << 20)  # freeing a 16 MiB block raises glibc's mmap threshold: what follows lives in the heap
    del freed
    chunks = [bytes(256 << 10) for _ in range(400)]  # 100 MiB
    kept = [*chunks[::20], chunks[-1]]  # the last one pins the top of the heap: nothing goes back on its own
    del chunks
    before = rss_mib()
    malloc_trim()(0)
    print(before, rss_mib())
    """
)


@pytest.mark.skipif(memory.malloc_trim() is None, reason="the C library has no malloc_trim (not glibc)")
def test_free_pages_inside_a_fragmented_heap_go_back() -> None:
    done = subprocess.run([sys.executable, "-c", FRAGMENTED_HEAP], capture_output=True, text=True, check=True)
    before, after = map(float, done.stdout.split())
    assert before - after > 30, (before, after)


async def trimmed(trim: Callable[[int], int], rounds: int, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run the trimmer every 10 ms with ``trim`` for glibc's until ``trim`` has run ``rounds`` times; its log lines."""
    calls = 0
    enough = asyncio.Event()

    def counted(pad: int) -> int:
        nonlocal calls
        calls += 1
        if calls >= rounds:
            enough.set()
        return trim(pad)

    monkeypatch.setattr(memory, "malloc_trim", lambda: counted)
    return await run_until(memory.keep_trimming(0.01), enough, level="WARNING")


async def test_the_trimmer_runs_every_interval_until_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    pads: list[int] = []

    def trim(pad: int) -> int:
        pads.append(pad)
        return 1

    lines = await trimmed(trim, 3, monkeypatch)
    assert pads[:3] == [0, 0, 0]
    assert lines == []


async def test_no_trimming_when_turned_off_or_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[int] = []
    monkeypatch.setattr(memory, "malloc_trim", lambda: called.append)
    await asyncio.wait_for(memory.keep_trimming(0), 1)  # returns at once
    monkeypatch.setattr(memory, "malloc_trim", lambda: None)
    await asyncio.wait_for(memory.keep_trimming(0.01), 1)
    assert called == []


async def test_a_failed_trim_is_logged_and_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(pad: int) -> int:
        raise OSError("no")

    lines = await trimmed(failing, 2, monkeypatch)
    # Called twice: the failure did not end the trimmer.
    assert lines[0].startswith("WARNING Could not give free memory back to the system")


async def test_the_polling_bot_keeps_trimming(
    tmp_path: Path, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'bot.sqlite3'}",
        bot_token=tg.token,
        telegram_api_url=tg.base_url,
        memory_trim_seconds=7,
    )
    async with build_services(settings, migrate=True):
        pass
    started = asyncio.Event()
    intervals: list[float] = []

    async def recorded(interval: float) -> None:
        intervals.append(interval)
        started.set()

    monkeypatch.setattr(runner, "keep_trimming", recorded)
    polling = asyncio.create_task(runner.run_polling(settings))
    try:
        await asyncio.wait_for(started.wait(), 30)
    finally:
        polling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
    assert intervals == [7]
