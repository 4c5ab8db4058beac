"""The test set-up's PostgreSQL databases are made on the server POMOGATOR_TEST_POSTGRES_URL names, whatever database
it names: a fresh server has no ``test`` database."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.conftest import POSTGRES_URL, _create_session_database, _drop_database
from tests.databases import database_at, run_on_server

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="POMOGATOR_TEST_POSTGRES_URL is not set")


async def test_the_session_database_is_made_through_the_maintenance_database() -> None:
    assert POSTGRES_URL is not None
    suffix = uuid.uuid4().hex[:12]
    absent = database_at(POSTGRES_URL, f"pomogator_absent_{suffix}")
    name = f"pomogator_session_{suffix}"
    url = await _create_session_database(absent, name)
    try:
        connection = await asyncpg.connect(url)
        try:
            assert await connection.fetchval("SELECT count(*) FROM users") == 0
        finally:
            await connection.close()
    finally:
        await _drop_database(absent, name)
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncpg.connect(url)
    # The database the URL named was never needed, nor made.
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncpg.connect(absent)
    await run_on_server(absent, "SELECT 1")
