"""Which failures are database outages, and how the PostgreSQL pool's connections are opened during one."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from loguru import logger

from pomogator.errors import DatabaseUnavailable
from pomogator.store.engine import Database
from pomogator.store.outage import PatientConnect, impatient, outage_of
from tests.fakes.tcp_proxy import TcpProxy


class RefusingServer:
    """A TCP server that closes every connection at once, as a restarting database host does; counts them."""

    def __init__(self) -> None:
        self.attempts = 0
        self.port = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.attempts += 1
        writer.transport.abort()


@pytest.fixture
async def refusing() -> AsyncIterator[RefusingServer]:
    server = RefusingServer()
    listener = await asyncio.start_server(server._accept, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


def dsn(port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=disable"


def test_connection_failures_are_outages_and_statement_errors_are_not(tmp_path: Path) -> None:
    lost = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    assert isinstance(outage_of(lost), DatabaseUnavailable)
    starting = asyncpg.CannotConnectNowError("the database system is starting up")
    assert isinstance(outage_of(starting), DatabaseUnavailable)
    assert isinstance(outage_of(asyncpg.AdminShutdownError("terminating connection")), DatabaseUnavailable)
    crashed = asyncpg.exceptions.CrashShutdownError("terminating connection because of crash of another server process")
    assert isinstance(outage_of(crashed), DatabaseUnavailable)
    assert isinstance(
        outage_of(asyncpg.exceptions.IdleSessionTimeoutError("idle-session timeout")), DatabaseUnavailable
    )
    assert isinstance(outage_of(asyncpg.InterfaceError("connection is closed")), DatabaseUnavailable)
    unavailable = DatabaseUnavailable("as it was")
    assert outage_of(unavailable) is unavailable
    assert outage_of(asyncpg.UniqueViolationError("duplicate key")) is None
    # Of class 57, a cancelled statement (statement_timeout, pg_cancel_backend) and a dropped database are not.
    assert outage_of(asyncpg.QueryCanceledError("canceling statement due to statement timeout")) is None
    assert outage_of(asyncpg.exceptions.DatabaseDroppedError("database was dropped")) is None
    # A write to a demoted primary: the pooled connection stays on that server, so trying again would not help.
    read_only = asyncpg.exceptions.ReadOnlySQLTransactionError("cannot execute UPDATE in a read-only transaction")
    assert outage_of(read_only) is None
    assert outage_of(asyncpg.InterfaceError("cannot perform operation: another operation is in progress")) is None
    assert outage_of(ValueError("nothing to do with it")) is None
    with pytest.raises(sqlite3.OperationalError) as cannot_open:
        sqlite3.connect(tmp_path / "missing" / "x.sqlite3")
    assert isinstance(outage_of(cannot_open.value), DatabaseUnavailable)
    with pytest.raises(sqlite3.OperationalError) as no_table:
        sqlite3.connect(":memory:").execute("SELECT * FROM nowhere")
    assert outage_of(no_table.value) is None


async def test_at_start_a_refusal_fails_at_once(refusing: RefusingServer) -> None:
    connect = PatientConnect(wait=30)
    with pytest.raises((OSError, asyncpg.PostgresConnectionError)):
        await connect(dsn(refusing.port))
    assert refusing.attempts == 1


async def test_while_serving_a_refusing_server_is_asked_again_until_the_wait_ends(refusing: RefusingServer) -> None:
    connect = PatientConnect(wait=1.0)
    connect.serving = True
    with pytest.raises(DatabaseUnavailable) as failed:
        await connect(dsn(refusing.port))
    assert refusing.attempts > 2
    assert "cannot connect" in failed.value.detail
    # The outage has lasted longer than the wait: the next connection is tried once and refused at once.
    attempts = refusing.attempts
    with pytest.raises(DatabaseUnavailable):
        await connect(dsn(refusing.port))
    assert refusing.attempts == attempts + 1


async def test_admins_hear_once_of_an_outage_that_outlasts_the_wait_and_of_its_end(refusing: RefusingServer) -> None:
    told: list[tuple[str, str]] = []
    sink = logger.add(
        lambda m: told.append((m.record["extra"]["alert"], m.record["message"])),
        filter=lambda r: "alert" in r["extra"],
    )
    try:
        connect = PatientConnect(wait=0.5)
        connect.serving = True
        with pytest.raises(DatabaseUnavailable):
            await connect(dsn(refusing.port))
        for _ in range(3):  # requests refused at once after it: no more alerts
            with pytest.raises(DatabaseUnavailable):
                await connect(dsn(refusing.port))
        assert [kind for kind, _ in told] == ["database_down"]
        assert "for 0.5 s or more" in told[0][1] and "refused" in told[0][1]
        connect.up()
        connect.up()
        assert [kind for kind, _ in told] == ["database_down", "database_back"]
    finally:
        logger.remove(sink)


async def test_a_server_that_never_answers_is_given_up_on_when_the_wait_ends() -> None:
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accepted, never answered: a host that drops packets after the handshake

    listener = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    connect = PatientConnect(wait=1.5)
    connect.serving = True
    try:
        # The driver's own timeout is 10 s an attempt: the attempt is cut where the wait ends, well before.
        with pytest.raises(DatabaseUnavailable):
            await asyncio.wait_for(connect(dsn(port), timeout=10), 8)
        assert len(held) == 1
    finally:
        for writer in held:
            writer.transport.abort()
        listener.close()
        await listener.wait_closed()


async def test_an_impatient_caller_is_refused_after_one_attempt(refusing: RefusingServer) -> None:
    connect = PatientConnect(wait=30)
    connect.serving = True
    with impatient(), pytest.raises(DatabaseUnavailable):
        await connect(dsn(refusing.port))
    assert refusing.attempts == 1


async def test_a_server_back_within_the_wait_gives_the_connection(postgres_url: str) -> None:
    proxy = TcpProxy("127.0.0.1", int(urlsplit(postgres_url).port or 5432)).start()
    try:
        proxy.cut()
        connect = PatientConnect(wait=10)
        connect.serving = True
        connecting = asyncio.create_task(connect(proxy.url(postgres_url)))
        await asyncio.sleep(0.5)
        assert not connecting.done()
        proxy.restore()
        connection = await connecting
        try:
            assert await connection.fetchval("SELECT 1") == 1
        finally:
            await connection.close()
    finally:
        proxy.close()


async def test_reachable_follows_what_health_checks_find(postgres_url: str) -> None:
    """A failed check starts the outage even when no reconnect was tried (the dropped connection failed it first);
    an answer ends it even when no connection had to be opened for it."""
    proxy = TcpProxy("127.0.0.1", int(urlsplit(postgres_url).port or 5432)).start()
    database = Database(proxy.url(postgres_url), pool_min=1, pool_max=2, reconnect_wait=0.3)
    try:
        await database.start()
        await database.ping()
        proxy.cut()
        with pytest.raises((DatabaseUnavailable, asyncpg.PostgresConnectionError)):
            await database.ping()
        await asyncio.sleep(0.4)
        assert not await database.reachable()
        proxy.restore()
        await asyncio.sleep(1.1)  # the next probe
        assert await database.reachable()
        # Marked away while the pool's connection still works: the next check's answer clears it.
        database._connect.down()
        await asyncio.sleep(0.4)
        assert database._connect.gave_up
        await database.ping()
        assert await database.reachable()
    finally:
        await database.close()
        proxy.close()
