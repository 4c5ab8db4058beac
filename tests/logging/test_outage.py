"""The database sink while the database is down: bounded memory, counted drops, callers never wait, recovery."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from typing import Any

from loguru import logger

from pomogator.config import Settings
from pomogator.logs.db_sink import DatabaseSink, SinkLimits
from tests.logging.conftest import Outage, db_sink, logging_to_database, stored

BOUND = 1000
LIMITS = SinkLimits(max_records=BOUND, batch_size=100, flush_interval=0.05, retry_max=0.2, write_timeout=5.0)


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def watch_writes(sink: DatabaseSink) -> list[asyncio.Task[Any] | None]:
    """Record which task each database write of the sink runs in."""
    original = sink._insert
    tasks: list[asyncio.Task[Any] | None] = []

    async def insert(*args: Any) -> None:
        tasks.append(asyncio.current_task())
        await original(*args)

    sink._insert = insert  # type: ignore[method-assign,assignment]
    return tasks


async def log_during_outage(sink: DatabaseSink) -> list[int]:
    """10,000 records: 8,000 from the event loop in bursts, 2,000 from a worker thread meanwhile. Returns the
    queue length seen after each one."""
    queued: list[int] = []

    def from_thread() -> None:
        for number in range(2000):
            logger.info("during the outage, thread {}", number)
            queued.append(sink.queued)

    thread = threading.Thread(target=from_thread)
    thread.start()
    for burst in range(8):
        for number in range(1000):
            logger.info("during the outage, loop {}", burst * 1000 + number)
            queued.append(sink.queued)
        # Let the writer run (and fail) between bursts, as it would in a busy bot.
        await asyncio.sleep(0.05)
    await asyncio.to_thread(thread.join)
    return queued


async def test_ten_thousand_records_while_the_database_is_down(
    log_settings: Settings, outage: Outage, stderr_text: Callable[[], str]
) -> None:
    settings = log_settings.model_copy(update={"database_url": outage.url})
    async with logging_to_database(settings, LIMITS) as sinks:
        sink = db_sink(sinks)
        writes_ran_in = watch_writes(sink)
        logger.info("before the outage")
        assert await sink.flush()

        outage.cut()
        queued = await log_during_outage(sink)
        await wait_for(lambda: sink.stats.failures >= 2)

        assert len(queued) == 10_000
        assert max(queued) <= BOUND
        assert sink.stats.peak <= BOUND
        assert sink.queued == BOUND
        dropped = sink.stats.dropped
        assert dropped == 10_000 - BOUND
        # Every database write ran in the writer task: nothing on the callers' path awaits the database.
        assert writes_ran_in
        assert all(task is not None and task.get_name() == "pomogator-log-writer" for task in writes_ran_in)

        outage.restore()
        await wait_for(lambda: sink.queued == 0 and sink.stats.unreported_drops == 0)
        logger.info("after the outage")
        assert await sink.flush()
        messages = [row["message"] for row in await stored()]

    during = [message for message in messages if message.startswith("during the outage")]
    assert len(during) == BOUND
    # The newest records are the ones kept.
    assert during[-1] == "during the outage, loop 7999"
    assert "before the outage" in messages
    assert "after the outage" in messages
    # The writer's notice about failing writes went to stderr once and was not fed back into the queue...
    assert not any(message.startswith("Log records cannot be written") for message in messages)
    text = stderr_text()
    assert text.count("Log records cannot be written to the database") == 1
    # ...and the drop was reported once the database was back, on stderr (and stored, now that it can be).
    assert re.findall(r"(\d+) log records were dropped", text) == [str(dropped)]
    assert any(message.startswith(f"{dropped} log records were dropped") for message in messages)


async def test_shutdown_with_the_database_down_is_bounded(
    log_settings: Settings, outage: Outage, stderr_text: Callable[[], str]
) -> None:
    settings = log_settings.model_copy(update={"database_url": outage.url})
    limits = SinkLimits(max_records=BOUND, batch_size=100, flush_interval=0.05, retry_max=0.2, drain_timeout=0.5)
    try:
        async with logging_to_database(settings, limits) as sinks:
            assert await db_sink(sinks).flush()
            outage.cut()
            for number in range(300):
                logger.info("never stored {}", number)
        # Leaving the block did not wait for the database beyond the drain timeout.
        assert "300 log records could not be written to the database before shutdown" in stderr_text()
    finally:
        outage.restore()


async def test_queue_is_bounded_in_bytes_too(log_settings: Settings, outage: Outage) -> None:
    settings = log_settings.model_copy(update={"database_url": outage.url})
    max_bytes = 50_000
    limits = SinkLimits(max_records=BOUND, max_bytes=max_bytes, batch_size=100, retry_max=0.2, drain_timeout=0.5)
    try:
        async with logging_to_database(settings, limits) as sinks:
            sink = db_sink(sinks)
            outage.cut()
            for _ in range(500):
                logger.info("x" * 1000)
                assert sink._bytes + sink._in_flight_bytes <= max_bytes
            assert 0 < sink.queued < 50
            assert sink.stats.dropped == 500 - sink.queued
    finally:
        outage.restore()
