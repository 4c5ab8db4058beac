"""The web app's background jobs (reminders, payment checks, giving memory back): a failure is logged and the next
round goes on."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import asyncpg
import pytest

from pomogator import jobs as jobs_module
from pomogator.container import Services
from pomogator.jobs import every
from pomogator.store.tables import DailyUsage
from pomogator.web import app as app_module
from tests.background import run_until
from tests.web.conftest import AppFactory
from tests.web.support import USER_ID

ERASED = 777


async def rounds_of(job_error: Exception, rounds: int = 3) -> tuple[int, list[str]]:
    calls = 0
    enough = asyncio.Event()

    async def job() -> None:
        nonlocal calls
        calls += 1
        if calls >= rounds:
            enough.set()
        raise job_error

    lines = await run_until(every(0.01, job, "Premium reminders"), enough)
    return calls, lines


async def test_a_job_that_fails_is_logged_with_its_traceback_and_tried_again() -> None:
    calls, lines = await rounds_of(ValueError("a bug"))
    assert calls >= 3
    assert lines[0].startswith("ERROR Premium reminders failed; will try again")
    assert "Traceback" in lines[0] and "ValueError: a bug" in lines[0]


async def test_a_job_the_database_outage_stopped_is_one_line_and_tried_again() -> None:
    calls, lines = await rounds_of(
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    )
    assert calls >= 3
    assert lines[0].startswith("WARNING Premium reminders skipped, the database is unavailable")
    assert "Traceback" not in "".join(lines)


async def test_the_web_app_keeps_trimming(web_app: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    started = asyncio.Event()
    intervals: list[float] = []

    async def recorded(interval: float) -> None:
        intervals.append(interval)
        started.set()

    monkeypatch.setattr(app_module, "keep_trimming", recorded)
    async with web_app(memory_trim_seconds=7):
        await asyncio.wait_for(started.wait(), 5)
    assert intervals == [7]


async def test_the_web_app_forgets_erased_peoples_request_counts(
    web_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs_module, "HOUSEKEEPING_SECONDS", 0.05)
    async with web_app() as (_, services):
        await DailyUsage.insert(DailyUsage(telegram_id=USER_ID, model="m", day=yesterday(services), used=2))
        # An erasure yesterday kept that day's count; the person has not come back.
        await DailyUsage.insert(DailyUsage(telegram_id=ERASED, model="m", day=yesterday(services), used=5))
        for _ in range(500):
            if not await DailyUsage.count().where(DailyUsage.telegram_id == ERASED):
                break
            await asyncio.sleep(0.01)
        assert await DailyUsage.count().where(DailyUsage.telegram_id == ERASED) == 0
        assert await DailyUsage.count().where(DailyUsage.telegram_id == USER_ID) == 1  # not erased: kept


def yesterday(services: Services) -> str:
    return (date.fromisoformat(services.quota.today()) - timedelta(days=1)).isoformat()
