"""Shared fixtures: a database on SQLite and (when configured) PostgreSQL, settings, services, the fake LLM."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

import pomogator.store  # noqa: F401  (sets PICCOLO_CONF before Piccolo looks for it)
from pomogator.config import Settings
from pomogator.container import Services, build_services
from pomogator.store.engine import Database
from pomogator.store.tables import TABLES
from tests.fakes.openai_server import FakeLLM
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.yookassa_server import FakeYooKassa

POSTGRES_URL = os.environ.get("POMOGATOR_TEST_POSTGRES_URL")
TEST_API_KEY = "sk-test-key"

# Nothing from the developer's environment or .env may leak into tests.
for _name in list(os.environ):
    if _name.startswith("POMOGATOR_") and _name != "POMOGATOR_TEST_POSTGRES_URL":
        del os.environ[_name]


async def _create_session_database(admin_url: str, name: str) -> str:
    """Create (or recreate) database ``name`` next to the one in ``admin_url``, migrate it, return its URL."""
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    database = Database(url)
    await database.start(migrate=True)
    await database.close()
    return url


async def _drop_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


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
    created next to the one POMOGATOR_TEST_POSTGRES_URL names and dropped at the end."""
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
