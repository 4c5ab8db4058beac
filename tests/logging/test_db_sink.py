"""The database sink: records from bot-like, web-like and thread code arrive with their context."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from loguru import logger

from pomogator.config import Settings
from pomogator.logs.db_sink import SinkLimits
from pomogator.logs.lifecycle import database_logging
from pomogator.store.engine import open_database
from tests.logging.conftest import stored

FAST = SinkLimits(flush_interval=0.05, retry_max=0.2, drain_timeout=2.0)


async def handle_update(user_id: int, update_id: int) -> None:
    """What the bot's middleware does around a handler."""
    with logger.contextualize(user_id=user_id, chat_id=user_id, update_id=update_id):
        await asyncio.sleep(0)
        logger.info("handled a message")


async def handle_request(request_id: str) -> None:
    with logger.contextualize(request_id=request_id):
        logger.warning("webhook from an unknown address")


def sdk_call_in_thread() -> None:
    """A blocking SDK in a worker thread, logging through the stdlib (as the YooKassa SDK does)."""
    logging.getLogger("yookassa.client").warning("payment API answered slowly")
    logger.info("plain loguru call from a worker thread")


async def test_records_arrive_with_context_from_bot_web_and_threads(
    log_settings: Settings, stderr_text: Callable[[], str]
) -> None:
    async with open_database(log_settings.database_url, migrate=True) as database:
        async with database_logging(log_settings, database, limits=FAST) as sinks:
            assert sinks.database is not None
            await asyncio.gather(handle_update(111, 9001), handle_update(222, 9002), handle_request("req-7"))
            await asyncio.to_thread(sdk_call_in_thread)
            thread = threading.Thread(target=sdk_call_in_thread)
            thread.start()
            thread.join()
            logging.getLogger("aiogram.event").warning("Update id=9003 is not handled")
            logger.debug("below the database level")
            assert await sinks.database.flush(), (sinks.database.stats, stderr_text())
            rows = await stored()

    by_message: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_message.setdefault(str(row["message"]), []).append(row)

    handled = sorted(by_message["handled a message"], key=lambda row: int(str(row["telegram_id"])))
    assert [row["telegram_id"] for row in handled] == [111, 222]
    assert handled[0]["context"] == {"user_id": 111, "chat_id": 111, "update_id": 9001}
    assert handled[0]["level"] == "INFO"
    assert handled[0]["process"] == "bot"
    assert handled[0]["logger"] == __name__
    assert handled[0]["exception"] is None

    (web,) = by_message["webhook from an unknown address"]
    assert web["context"] == {"request_id": "req-7"}
    assert web["telegram_id"] is None
    assert web["level"] == "WARNING"

    sdk = by_message["payment API answered slowly"]
    assert len(sdk) == 2
    assert {row["logger"] for row in sdk} == {"yookassa.client"}
    assert len(by_message["plain loguru call from a worker thread"]) == 2

    (aiogram,) = by_message["Update id=9003 is not handled"]
    assert aiogram["logger"] == "aiogram.event"
    assert "below the database level" not in by_message
    # created_at is an aware timestamp in UTC
    assert handled[0]["created_at"].utcoffset() is not None


async def test_exceptions_are_stored_as_text(log_settings: Settings, stderr_text: Callable[[], str]) -> None:
    async with open_database(log_settings.database_url, migrate=True) as database:
        async with database_logging(log_settings, database, limits=FAST) as sinks:
            assert sinks.database is not None
            try:
                {}["missing"]  # noqa: B018
            except KeyError:
                logger.exception("lookup failed at the frontier")
            assert await sinks.database.flush()
            (row,) = [row for row in await stored() if row["message"] == "lookup failed at the frontier"]
    assert row["level"] == "ERROR"
    assert "Traceback (most recent call last)" in row["exception"]
    assert row["exception"].rstrip().endswith("KeyError: 'missing'")
    assert "lookup failed at the frontier" in stderr_text()
    assert "KeyError: 'missing'" in stderr_text()


async def test_database_drivers_are_not_fed_back(log_settings: Settings, stderr_text: Callable[[], str]) -> None:
    async with open_database(log_settings.database_url, migrate=True) as database:
        async with database_logging(log_settings, database, limits=FAST) as sinks:
            assert sinks.database is not None
            logging.getLogger("asyncpg.pool").warning("connection lost")
            logging.getLogger("piccolo.engine").warning("query slow")
            logger.warning("an application warning")
            assert await sinks.database.flush()
            messages = [row["message"] for row in await stored()]
    assert "an application warning" in messages
    assert "connection lost" not in messages
    assert "query slow" not in messages
    # They still reach stderr.
    assert "connection lost" in stderr_text()


async def test_queue_is_drained_at_shutdown(log_settings: Settings, stderr_text: Callable[[], str]) -> None:
    limits = SinkLimits(flush_interval=60.0, batch_size=100, drain_timeout=10.0)
    async with open_database(log_settings.database_url, migrate=True) as database:
        async with database_logging(log_settings, database, limits=limits) as sinks:
            for number in range(450):
                logger.info("record {}", number)
            assert sinks.database is not None
            assert sinks.database.queued == 450
        messages = [row["message"] for row in await stored()]
    assert messages == [f"record {number}" for number in range(450)]


async def test_level_off_disables_the_database_sink(log_settings: Settings) -> None:
    settings = log_settings.model_copy(update={"log_db_level": "off"})
    async with open_database(settings.database_url, migrate=True) as database:
        async with database_logging(settings, database) as sinks:
            assert sinks.database is None
            logger.error("not stored")
        assert await stored() == []


async def test_nested_composition_roots_share_one_sink(log_settings: Settings) -> None:
    async with open_database(log_settings.database_url, migrate=True) as database:
        async with database_logging(log_settings, database, limits=FAST) as outer:
            async with database_logging(log_settings, database) as inner:
                assert inner is outer
                logger.info("stored once")
            assert outer.database is not None
            assert await outer.database.flush()
            assert [row["message"] for row in await stored()].count("stored once") == 1
