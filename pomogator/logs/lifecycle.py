"""The database sink and admin alerts, for as long as a process has its database open."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from loguru import logger

from pomogator.config import Settings
from pomogator.logs.alerts import DEFAULT_POLICY, AlertPolicy, AlertSink
from pomogator.logs.db_sink import DEFAULT_LIMITS, DatabaseSink, SinkLimits, accepts
from pomogator.logs.intercept import quiet_chatty
from pomogator.logs.redact import Redactor
from pomogator.logs.setup import db_level_number
from pomogator.notify import TelegramNotifier
from pomogator.store.engine import Database

ALERT_LEVEL = "WARNING"
ALERT_CLOSE_TIMEOUT_S = 5.0


@dataclass(slots=True)
class LogSinks:
    """What ``database_logging`` runs: either may be None (``POMOGATOR_LOG_DB_LEVEL=OFF``; no bot token or admins)."""

    database: DatabaseSink | None = None
    alerts: AlertSink | None = None


_active: LogSinks | None = None


def alerts_enabled(settings: Settings) -> bool:
    token = settings.bot_token.get_secret_value() if settings.bot_token is not None else ""
    return bool(token and settings.admin_id_list)


@contextlib.asynccontextmanager
async def database_logging(
    settings: Settings,
    database: Database,
    *,
    limits: SinkLimits = DEFAULT_LIMITS,
    alert_policy: AlertPolicy = DEFAULT_POLICY,
) -> AsyncIterator[LogSinks]:
    """Store records at ``POMOGATOR_LOG_DB_LEVEL`` and above in the log table, and alert admins, inside the block.

    ``database`` must be started. On exit pending alerts get a few seconds and the queue is drained (bounded by
    ``limits.drain_timeout``) before the caller closes the database. One process runs one set of sinks: a nested
    call (a second composition root in the same process) reuses the outer one.
    """
    global _active
    if _active is not None:
        yield _active
        return
    redactor = Redactor.from_settings(settings)
    sinks = LogSinks()
    db_level = db_level_number(settings)
    async with contextlib.AsyncExitStack() as stack:
        if db_level is not None:
            sink = DatabaseSink(database.engine, redactor, limits)
            sink.start()
            stack.push_async_callback(sink.stop)
            quiet = quiet_chatty(db_level)
            handler = logger.add(
                sink.write,
                level=db_level,
                filter=accepts if quiet is None else lambda record: accepts(record) and quiet(record),
                format="{message}",
                catch=True,
            )
            stack.callback(_remove_handler, handler)
            sinks.database = sink
        if alerts_enabled(settings):
            assert settings.bot_token is not None
            notifier = TelegramNotifier(settings.telegram_api_url, settings.bot_token.get_secret_value())
            stack.push_async_callback(notifier.close)
            admins = settings.admin_id_list

            async def send(text: str) -> None:
                for admin in admins:
                    await notifier.send(admin, text)

            alert_sink = AlertSink(send, redactor, alert_policy)
            alert_sink.start()
            stack.push_async_callback(alert_sink.close, ALERT_CLOSE_TIMEOUT_S)
            handler = logger.add(alert_sink.write, level=ALERT_LEVEL, format="{message}", catch=True)
            stack.callback(_remove_handler, handler)
            sinks.alerts = alert_sink
        _active = sinks
        try:
            yield sinks
        finally:
            _active = None


def _remove_handler(handler_id: int) -> None:
    # A later ``setup_logging`` may already have removed every handler.
    with contextlib.suppress(ValueError):
        logger.remove(handler_id)
