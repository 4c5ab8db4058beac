"""Shared fixtures: a database on SQLite and (when configured) PostgreSQL, settings, services, the fake LLM."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

import pomogator.config
import pomogator.store  # sets PICCOLO_CONF before Piccolo looks for it
from pomogator.config import Settings
from pomogator.container import Services, build_services
from pomogator.store.engine import Database
from pomogator.store.tables import TABLES
from pomogator.timeutil import next_midnight, utcnow
from tests.databases import database_at, run_on_server
from tests.fakes.openai_server import FakeLLM
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.yookassa_server import FakeYooKassa

POSTGRES_URL = os.environ.get("POMOGATOR_TEST_POSTGRES_URL")
TEST_API_KEY = "sk-test-key"

# Nothing from the developer's environment or .env may leak into tests (processes they start run in directories of
# their own, without one).
for _name in list(os.environ):
    if _name.startswith("POMOGATOR_") and _name != "POMOGATOR_TEST_POSTGRES_URL":
        del os.environ[_name]
pomogator.config.ENV_FILE = Path(__file__).parent / "no-such.env"

# Requests are counted per day of the configured zone. A test that asks at 23:59:59 there and checks "today's"
# count a moment later finds the new day's, so no test starts this close to the zone's midnight: it waits for the
# new day instead (longer than any one test takes; a run at that hour waits once, at most this long, per worker).
QUOTA_DAY_MARGIN = timedelta(minutes=3)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    now = utcnow()
    midnight = next_midnight(now, ZoneInfo(Settings.model_fields["timezone"].default))
    if midnight - now < QUOTA_DAY_MARGIN:
        time.sleep((midnight - now).total_seconds() + 1)


async def _create_session_database(server_url: str, name: str) -> str:
    """Create (or recreate) database ``name`` on the server of ``server_url``, migrate it, return its URL. The
    statements go through the server's ``postgres`` maintenance database, so the database the URL names need not
    exist."""
    await run_on_server(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await run_on_server(server_url, f'CREATE DATABASE "{name}"')
    url = database_at(server_url, name)
    database = Database(url)
    await database.start(migrate=True)
    await database.close()
    return url


async def _drop_database(server_url: str, name: str) -> None:
    await run_on_server(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def truncate_postgres(url: str) -> None:
    names = ", ".join(table._meta.tablename for table in TABLES)
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f"TRUNCATE {names} RESTART IDENTITY")
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A freshly migrated PostgreSQL database of this test session's own (so concurrent runs do not collide),
    created on the server POMOGATOR_TEST_POSTGRES_URL names (whatever database it names, which need not exist)
    and dropped at the end."""
    if not POSTGRES_URL:
        pytest.skip("POMOGATOR_TEST_POSTGRES_URL is not set")
    name = f"pomogator_test_{os.getpid()}"
    # Requested from inside async fixtures, so run on a thread with its own event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        url = pool.submit(asyncio.run, _create_session_database(POSTGRES_URL, name)).result()
        try:
            yield url
        finally:
            pool.submit(asyncio.run, _drop_database(POSTGRES_URL, name)).result()


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty, migrated database: an SQLite file, or this session's PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.sqlite3'}"
        return
    url: str = request.getfixturevalue("postgres_url")
    await truncate_postgres(url)
    yield url


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"openrouter_api_key": TEST_API_KEY, "log_level": "WARNING"}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def kassa() -> AsyncIterator[FakeYooKassa]:
    async with FakeYooKassa() as fake:
        yield fake


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM(api_key=TEST_API_KEY) as llm:
        yield llm


@pytest.fixture
def settings(db_url: str, fake_llm: FakeLLM) -> Settings:
    return make_settings(database_url=db_url, openrouter_base_url=fake_llm.base_url, openrouter_max_retries=0)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with build_services(settings, migrate=True) as built:
        yield built
