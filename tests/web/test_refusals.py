"""Refused webhook calls cost the log table a few rows a minute, not one per call; old log rows are deleted."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from pomogator import jobs as jobs_module
from pomogator.logs import ratelimit
from pomogator.store.engine import open_database
from pomogator.store.tables import LogRecord
from pomogator.timeutil import utcnow
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.yookassa_server import FakeYooKassa
from tests.web.conftest import AppFactory
from tests.web.support import WEBHOOK, WebProcess, billing_env, billing_settings

FLOOD = 40


async def stored_messages(fragment: str) -> list[str]:
    rows = await LogRecord.select(LogRecord.message).where(LogRecord.message.like(f"%{fragment}%"))
    return sorted(row["message"] for row in rows)


async def wait_stored(fragment: str, count: int, timeout: float = 10.0) -> list[str]:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await stored_messages(fragment)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    return await stored_messages(fragment)


async def test_a_flood_of_refused_notifications_stores_one_row_and_one_summary(
    web_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One window for the whole flood, even on a loaded machine (it takes well under a second on an idle one).
    window = 5.0
    monkeypatch.setattr(ratelimit, "WINDOW_S", window)
    async with web_app(yookassa_trusted_networks="185.71.76.0/27") as (url, _):
        async with httpx.AsyncClient() as client:
            for _ in range(FLOOD):
                assert (await client.post(url + WEBHOOK, json={"type": "notification"})).status_code == 403
        # The summary comes when the window ends, with nothing more sent.
        rows = await wait_stored("YooKassa notification", 2, timeout=window + 10)
        await asyncio.sleep(0.3)  # anything more would have been stored by now
        assert await stored_messages("YooKassa notification") == rows
    assert rows == [
        "YooKassa notification from untrusted address 127.0.0.1 refused",
        f"YooKassa notifications from untrusted addresses: {FLOOD - 1} more refused in the last minute, "
        "not logged one by one",
    ]


@pytest.mark.slow
async def test_a_flood_of_telegram_calls_without_the_secret_stores_one_row_and_a_summary_at_shutdown(
    kassa: FakeYooKassa, tg: FakeTelegram, tmp_path: Path
) -> None:
    """In a process of its own: the bot's routers attach to one dispatcher per process."""
    database = tmp_path / "web.sqlite3"
    settings = billing_settings(f"sqlite:///{database}", kassa, tg)
    env = billing_env(settings, POMOGATOR_TELEGRAM_WEBHOOK_SECRET="right-secret-0123456789abcdefghijklmnopqrstuv")
    web = await WebProcess(env, tmp_path).start()
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(FLOOD):
                response = await client.post(
                    web.url + "/webhooks/telegram", json={}, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}
                )
                assert response.status_code == 403
    finally:
        await web.stop()
    # The minute was not over: its summary is written at shutdown, and stored before the database closes.
    async with open_database(settings.database_url):
        rows = await stored_messages("Telegram webhook call")
    assert rows == [
        "Telegram webhook call without the right secret from 127.0.0.1 refused",
        f"Telegram webhook calls without the right secret: {FLOOD - 1} more refused in the last minute, "
        "not logged one by one",
    ], web.log()


@pytest.mark.parametrize("days", [30, 0])
async def test_the_web_app_deletes_log_rows_older_than_the_retention(
    web_app: AppFactory, monkeypatch: pytest.MonkeyPatch, days: int
) -> None:
    monkeypatch.setattr(jobs_module, "HOUSEKEEPING_SECONDS", 0.05)
    async with web_app(log_db_retention_days=days):
        now = utcnow()
        for age, message in ((timedelta(days=31), "old"), (timedelta(days=29), "recent")):
            await LogRecord.insert(
                LogRecord(created_at=now - age, level="INFO", logger="x", message=message, process="web", context="{}")
            )
        for _ in range(100):
            if not await stored_messages("old"):
                break
            await asyncio.sleep(0.02)
        left = await stored_messages("recent") + await stored_messages("old")
    # 0 keeps every record.
    assert left == (["recent"] if days else ["recent", "old"])
