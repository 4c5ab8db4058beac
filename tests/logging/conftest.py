"""Fixtures for logging tests: a clean loguru after each test, a database the test can take down and bring back."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from loguru import logger

from pomogator.config import Settings
from pomogator.logs.alerts import DEFAULT_POLICY, AlertPolicy
from pomogator.logs.db_sink import DatabaseSink, SinkLimits
from pomogator.logs.intercept import stop_intercepting
from pomogator.logs.lifecycle import LogSinks, database_logging
from pomogator.logs.setup import setup_logging
from pomogator.store.engine import open_database
from pomogator.store.tables import LogRecord
from tests.conftest import make_settings
from tests.fakes.tcp_proxy import TcpProxy

BOT_TOKEN = "987654321:AAHsecretBotTokenValue_0123456789xyz"
API_KEY = "sk-or-v1-0123456789abcdef0123456789abcdef"
YOOKASSA_SECRET = "test_SeCrEt0YooKassaKey1234567890abcdef"
WEBHOOK_SECRET = "webhook-secret-Value-42-0123456789abcdefghijklmnopqrstuv"
SECRETS = (BOT_TOKEN, API_KEY, YOOKASSA_SECRET, WEBHOOK_SECRET, BOT_TOKEN.split(":")[1])


FAST = SinkLimits(flush_interval=0.05, retry_max=0.2, drain_timeout=2.0)


@contextlib.asynccontextmanager
async def logging_to_database(
    settings: Settings, limits: SinkLimits = FAST, alert_policy: AlertPolicy = DEFAULT_POLICY
) -> AsyncIterator[LogSinks]:
    """What ``build_services`` does for logging: open the database, run the sinks."""
    async with (
        open_database(settings.database_url, migrate=True) as database,
        database_logging(settings, database, limits=limits, alert_policy=alert_policy) as sinks,
    ):
        yield sinks


def db_sink(sinks: LogSinks) -> DatabaseSink:
    assert sinks.database is not None
    return sinks.database


def _no_patch(record: Any) -> None:
    return None


@pytest.fixture(autouse=True)
def restore_loguru() -> Iterator[None]:
    """Logging tests reconfigure the global logger; give the next test loguru's defaults back."""
    yield
    logger.remove()
    logger.configure(patcher=_no_patch, extra={})
    logger.add(sys.stderr)
    stop_intercepting()


@pytest.fixture
def log_settings(db_url: str) -> Settings:
    return make_settings(
        database_url=db_url,
        log_level="INFO",
        bot_token=BOT_TOKEN,
        openrouter_api_key=API_KEY,
        yookassa_shop_id="123456",
        yookassa_secret_key=YOOKASSA_SECRET,
        telegram_webhook_secret=WEBHOOK_SECRET,
    )


@pytest.fixture
def stderr_text(log_settings: Settings) -> Callable[[], str]:
    """Configure logging like an entry point does (process "bot"), with stderr captured; returns its text."""
    stream = io.StringIO()
    setup_logging(log_settings, "bot", stream=stream)
    return stream.getvalue


async def stored() -> list[dict[str, Any]]:
    """Every stored log record, oldest first, with the context parsed."""
    rows = await LogRecord.select().order_by(LogRecord.id).output(load_json=True)
    return list(rows)


@dataclass
class Outage:
    """A database whose connection the test can cut and restore."""

    url: str
    cut: Callable[[], None]
    restore: Callable[[], None]


@pytest.fixture
async def outage(db_url: str, tmp_path: Path) -> AsyncIterator[Outage]:
    if db_url.startswith("sqlite"):
        # The database's directory disappears (a lost mount) and comes back.
        folder = tmp_path / "data"
        folder.mkdir()
        away = tmp_path / "data-away"
        yield Outage(
            f"sqlite:///{folder / 'test.sqlite3'}",
            cut=lambda: os.rename(folder, away),
            restore=lambda: os.rename(away, folder),
        )
        return
    parts = urlsplit(db_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    try:
        yield Outage(proxy.url(db_url), cut=proxy.cut, restore=proxy.restore)
    finally:
        proxy.close()
