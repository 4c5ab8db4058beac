"""The database sink: records from bot-like, web-like and thread code arrive with their context."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from loguru import logger

from pomogator.config import Settings
from pomogator.logs.db_sink import SinkLimits, is_transient
from pomogator.logs.lifecycle import database_logging
from pomogator.logs.setup import setup_logging
from pomogator.store.engine import SharedConnectionSQLiteEngine, open_database
from pomogator.store.tables import LogRecord
from tests.logging.conftest import FAST, Outage, db_sink, logging_to_database, stored
from tests.logging.test_outage import wait_for


async def handle_update(user_id: int, update_id: int) -> None:
    """What the bot's middleware does around a handler."""
    with logger.contextualize(user_id=user_id, chat_id=user_id, update_id=update_id):
        await asyncio.sleep(0)
        logger.info("handled a message")


async def handle_request(request_id: str) -> None:
    """What the web app's middleware does around an endpoint."""
    with logger.contextualize(request_id=request_id):
        logger.warning("webhook from an unknown address")


def sdk_call_in_thread() -> None:
    """A blocking SDK in a worker thread, logging through the stdlib (as the YooKassa SDK does)."""
    logging.getLogger("yookassa.client").warning("payment API answered slowly")
    logger.info("plain loguru call from a worker thread")


def by_message(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["message"], []).append(row)
    return grouped


async def test_records_arrive_with_context_from_bot_web_and_threads(
    log_settings: Settings, stderr_text: Callable[[], str]
) -> None:
    async with logging_to_database(log_settings) as sinks:
        await asyncio.gather(handle_update(111, 9001), handle_update(222, 9002), handle_request("req-7"))
        await asyncio.to_thread(sdk_call_in_thread)
        thread = threading.Thread(target=sdk_call_in_thread)
        thread.start()
        thread.join()
        logging.getLogger("aiogram.event").warning("Update id=9003 is not handled")
        logger.debug("below the database level")
        assert await db_sink(sinks).flush()
        rows = by_message(await stored())

    handled = sorted(rows["handled a message"], key=lambda row: row["telegram_id"])
    assert [row["telegram_id"] for row in handled] == [111, 222]
    assert handled[0]["context"] == {"user_id": 111, "chat_id": 111, "update_id": 9001}
    assert handled[0]["level"] == "INFO"
    assert handled[0]["process"] == "bot"
    assert handled[0]["logger"] == __name__
    assert handled[0]["exception"] is None
    assert handled[0]["created_at"].utcoffset() is not None

    (web,) = rows["webhook from an unknown address"]
    assert web["context"] == {"request_id": "req-7"}
    assert web["telegram_id"] is None
    assert web["level"] == "WARNING"

    # From asyncio.to_thread and from a bare thread alike.
    sdk = rows["payment API answered slowly"]
    assert [row["logger"] for row in sdk] == ["yookassa.client", "yookassa.client"]
    assert len(rows["plain loguru call from a worker thread"]) == 2

    (aiogram,) = rows["Update id=9003 is not handled"]
    assert aiogram["logger"] == "aiogram.event"
    assert "below the database level" not in rows


async def test_exceptions_are_stored_as_text(log_settings: Settings, stderr_text: Callable[[], str]) -> None:
    async with logging_to_database(log_settings) as sinks:
        try:
            dict[str, int]()["missing"]
        except KeyError:
            logger.exception("lookup failed at the frontier")
        assert await db_sink(sinks).flush()
        (row,) = by_message(await stored())["lookup failed at the frontier"]
    assert row["level"] == "ERROR"
    assert "Traceback (most recent call last)" in row["exception"]
    assert row["exception"].endswith("KeyError: 'missing'")
    assert "lookup failed at the frontier" in stderr_text()
    assert "KeyError: 'missing'" in stderr_text()


async def test_database_drivers_are_not_fed_back(log_settings: Settings, stderr_text: Callable[[], str]) -> None:
    async with logging_to_database(log_settings) as sinks:
        logging.getLogger("asyncpg.pool").warning("connection lost")
        logging.getLogger("piccolo.engine").warning("query slow")
        logger.warning("an application warning")
        assert await db_sink(sinks).flush()
        rows = by_message(await stored())
    assert "an application warning" in rows
    assert "connection lost" not in rows
    assert "query slow" not in rows
    # They still reach stderr.
    assert "connection lost" in stderr_text()


@pytest.mark.parametrize("db_level", ["INFO", "DEBUG"])
async def test_chatty_libraries_are_stored_only_when_the_table_itself_is_at_debug(
    log_settings: Settings, db_level: str
) -> None:
    """POMOGATOR_LOG_LEVEL=DEBUG shows aiogram's "Update id=... is handled" on stderr: the table keeps to its own
    level (a row for every update otherwise)."""
    settings = log_settings.model_copy(update={"log_level": "DEBUG", "log_db_level": db_level})
    stream = io.StringIO()
    setup_logging(settings, "bot", stream=stream)
    async with logging_to_database(settings) as sinks:
        logging.getLogger("aiogram.event").info("Update id=7 is handled")
        logging.getLogger("httpx2").info("HTTP Request: POST /chat/completions")
        logging.getLogger("aiogram.event").warning("Update id=8 is not handled")
        logger.info("an application record")
        assert await db_sink(sinks).flush()
        rows = by_message(await stored())
    chatty = {"Update id=7 is handled", "HTTP Request: POST /chat/completions"}
    assert {"Update id=8 is not handled", "an application record"} <= set(rows)
    if db_level == "DEBUG":
        assert chatty <= set(rows)
    else:
        assert not chatty & set(rows)
    assert all(message in stream.getvalue() for message in chatty)


async def test_queue_is_drained_at_shutdown(log_settings: Settings, stderr_text: Callable[[], str]) -> None:
    limits = SinkLimits(flush_interval=60.0, batch_size=100, drain_timeout=10.0)
    async with open_database(log_settings.database_url, migrate=True) as database:
        async with database_logging(log_settings, database, limits=limits) as sinks:
            for number in range(450):
                logger.info("record {}", number)
            assert db_sink(sinks).queued == 450
        messages = [row["message"] for row in await stored()]
    assert messages == [f"record {number}" for number in range(450)]


async def test_on_sqlite_stored_records_commit_without_waiting_for_the_disk(log_settings: Settings) -> None:
    async with open_database(log_settings.database_url, migrate=True) as database:
        engine = database.engine
        if not isinstance(engine, SharedConnectionSQLiteEngine):
            pytest.skip("SQLite only: PostgreSQL's commits do not queue on one worker thread")
        async with database_logging(log_settings, database, limits=FAST) as sinks:
            # A statement that commits durably (it changes nothing): the shared connection is open and at FULL.
            await LogRecord.update({LogRecord.level: "INFO"}).where(LogRecord.id < 0)
            trace: list[str] = []
            engine._connected().set_trace_callback(trace.append)
            logger.warning("kept lazily")
            assert await db_sink(sinks).flush()
            assert [row["message"] for row in await stored()] == ["kept lazily"]
    inserts = [statement for statement in trace if statement.startswith("INSERT")]
    assert len(inserts) == 1
    assert trace[trace.index(inserts[0]) - 1] == "PRAGMA synchronous = NORMAL"


async def test_level_off_disables_the_database_sink(log_settings: Settings) -> None:
    settings = log_settings.model_copy(update={"log_db_level": "off"})
    async with logging_to_database(settings) as sinks:
        assert sinks.database is None
        logger.error("not stored")
        assert await stored() == []


async def test_nested_composition_roots_share_one_sink(log_settings: Settings) -> None:
    async with logging_to_database(log_settings) as outer:
        async with (
            open_database(log_settings.database_url) as database,
            database_logging(log_settings, database) as inner,
        ):
            assert inner is outer
            logger.info("stored once")
        assert await db_sink(outer).flush()
        assert [row["message"] for row in await stored()].count("stored once") == 1


async def test_records_the_database_refuses_are_stored_cleaned(
    log_settings: Settings, stderr_text: Callable[[], str]
) -> None:
    on_sqlite = log_settings.database_url.startswith("sqlite")
    async with logging_to_database(log_settings) as sinks:
        sink = db_sink(sinks)
        logger.info("before the bad ones")
        assert await sink.flush()
        # In one batch: PostgreSQL refuses a NUL; neither database takes an integer beyond 64 bits or a lone
        # surrogate (not encodable as UTF-8).
        logger.info("with nul \x00 here")
        logger.bind(user_id=10**22).info("from a user id out of range")
        logger.info("lone surrogate \udc80 here")
        for number in range(5):
            logger.info("after the bad ones {}", number)
        assert await sink.flush()
        logger.info("later on")
        assert await sink.flush()
        rows = await stored()

    messages = [row["message"] for row in rows]
    assert messages == [
        "before the bad ones",
        "with nul \x00 here" if on_sqlite else "with nul \ufffd here",
        "from a user id out of range",
        "lone surrogate ? here",
        *(f"after the bad ones {number}" for number in range(5)),
        "later on",
    ]
    out_of_range = rows[2]
    assert out_of_range["telegram_id"] is None
    assert out_of_range["context"] == {"user_id": 10**22}
    assert sink.stats.cleaned == (2 if on_sqlite else 3)
    assert sink.stats.refused == 0
    assert "refused by the database" not in stderr_text()


@contextlib.asynccontextmanager
async def refusing(database_url: str, marker: str) -> AsyncIterator[None]:
    """The log table refuses messages containing ``marker``, as a constraint of the database would."""
    if database_url.startswith("sqlite"):
        create = (
            "CREATE TRIGGER refuse_marked BEFORE INSERT ON log_records "
            f"WHEN instr(NEW.message, '{marker}') > 0 BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        drop = "DROP TRIGGER refuse_marked"
    else:
        create = f"ALTER TABLE log_records ADD CONSTRAINT refuse_marked CHECK (position('{marker}' in message) = 0)"
        drop = "ALTER TABLE log_records DROP CONSTRAINT refuse_marked"
    await LogRecord.raw(create)
    try:
        yield
    finally:
        await LogRecord.raw(drop)


async def test_a_record_refused_even_cleaned_is_dropped_with_one_warning(
    log_settings: Settings, stderr_text: Callable[[], str]
) -> None:
    async with logging_to_database(log_settings) as sinks, refusing(log_settings.database_url, "REFUSE-ME"):
        sink = db_sink(sinks)
        logger.info("first")
        logger.info("please REFUSE-ME")
        logger.info("second")
        assert await sink.flush()
        logger.info("third")
        assert await sink.flush()
        messages = [row["message"] for row in await stored()]

    assert messages == ["first", "second", "third"]
    assert sink.stats.refused == 1
    assert sink.stats.failures == 0
    text = stderr_text()
    assert text.count("A log record was refused by the database and dropped") == 1
    assert "'please REFUSE-ME'" in text


def test_transient_errors_are_told_from_refusals() -> None:
    transient = [
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        sqlite3.OperationalError("unable to open database file"),
        sqlite3.OperationalError("database is locked"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.DiskFullError("could not extend file"),
        asyncpg.InterfaceError("pool is closing"),
    ]
    refusals = [
        asyncpg.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00'),
        asyncpg.DataError("invalid input for query argument $6: 10000000000000000000000 (value out of int64 range)"),
        asyncpg.CheckViolationError("new row violates check constraint"),
        OverflowError("Python int too large to convert to SQLite INTEGER"),
        UnicodeEncodeError("utf-8", "\udc80", 0, 1, "surrogates not allowed"),
        sqlite3.IntegrityError("refused"),
    ]
    assert [is_transient(exc) for exc in transient] == [True] * len(transient)
    assert [is_transient(exc) for exc in refusals] == [False] * len(refusals)


async def test_a_refused_record_during_an_outage_is_kept_until_the_database_is_back(
    log_settings: Settings, outage: Outage, stderr_text: Callable[[], str]
) -> None:
    settings = log_settings.model_copy(update={"database_url": outage.url})
    async with logging_to_database(settings) as sinks:
        sink = db_sink(sinks)
        logger.info("before the outage")
        assert await sink.flush()
        outage.cut()
        logger.bind(user_id=10**22).info("from a user id out of range")
        logger.info("during the outage")
        await wait_for(lambda: sink.stats.failures >= 2)
        # Unreachable is not refused: nothing was given up on.
        assert sink.queued == 2
        assert sink.stats.cleaned == sink.stats.refused == 0
        outage.restore()
        assert await sink.flush()
        messages = [row["message"] for row in await stored()]
    assert messages == ["before the outage", "from a user id out of range", "during the outage"]
    assert sink.stats.cleaned == 1
