"""The database sink: records go into a bounded in-memory queue; a background task writes them in batches.

Callers (any thread, the event loop among them) only convert the record and append it under a lock: nothing on
their path waits for the database. When the database is down the queue keeps the newest records up to its bound,
dropping and counting the oldest; the count is reported once writes succeed again. When the database refuses a
batch for what is in it (a NUL character on PostgreSQL, a number out of range), the rows go one at a time, and a
refused one is stored cleaned or, failing that, dropped: one bad record never holds up the ones after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import sqlite3
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
from loguru import logger

from pomogator.logs.records import context_of, logger_name, process_of, telegram_id_of
from pomogator.store.engine import SharedConnectionSQLiteEngine
from pomogator.store.outage import impatient
from pomogator.store.tables import LogRecord

if TYPE_CHECKING:
    from loguru import Message, Record
    from piccolo.engine.base import Engine

    from pomogator.logs.redact import Redactor

MAX_RECORDS = 10_000
MAX_BYTES = 16 * 1024 * 1024
BATCH_SIZE = 200
FLUSH_INTERVAL_S = 1.0
RETRY_MAX_S = 30.0
WRITE_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 5.0

MAX_MESSAGE_CHARS = 8_000
MAX_EXCEPTION_CHARS = 16_000
MAX_CONTEXT_CHARS = 4_000

INT64 = range(-(2**63), 2**63)
# SQLSTATE classes of PostgreSQL errors about the values sent (data exception, integrity constraint violation,
# program limit exceeded): the same rows fail the same way whenever they are sent again.
REFUSAL_SQLSTATE_CLASSES = ("22", "23", "54")

# Loggers of the database stack: their records may be caused by this sink's writes, so they stay out of it.
DRIVER_LOGGERS = ("asyncpg", "piccolo", "aiosqlite", "sqlite3")

_writing: contextvars.ContextVar[bool] = contextvars.ContextVar("pomogator_log_sink_writing", default=False)


@dataclass(slots=True)
class Row:
    values: dict[str, Any]
    size: int


def clip(text: str, limit: int) -> str:
    """Keep the end of long texts: the last lines of a traceback say the most."""
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def utc_time(record: Record) -> datetime:
    """The record's time in UTC as a plain ``datetime`` (loguru's subclass is unknown to sqlite3's adapters)."""
    moment = record["time"].astimezone(UTC)
    return datetime(*moment.timetuple()[:6], moment.microsecond, tzinfo=UTC)


def row_from(record: Record, redactor: Redactor, max_message: int = MAX_MESSAGE_CHARS) -> Row:
    message = redactor.text(record["message"])
    if len(message) > max_message:
        message = message[: max_message - 1] + "…"
    exception = record["exception"]
    exception_text = clip(redactor.exception(exception), MAX_EXCEPTION_CHARS) if exception is not None else None
    context = json.dumps(redactor.mapping(context_of(record)), ensure_ascii=False, default=str)
    if len(context) > MAX_CONTEXT_CHARS:
        context = json.dumps({"truncated": context[:MAX_CONTEXT_CHARS]}, ensure_ascii=False)
    values: dict[str, Any] = {
        "created_at": utc_time(record),
        "level": record["level"].name[:16],
        "logger": logger_name(record)[:255],
        "message": message,
        "process": process_of(record)[:64],
        "telegram_id": telegram_id_of(record),
        "context": context,
        "exception": exception_text,
    }
    size = 200 + len(message) + len(context) + len(exception_text or "")
    return Row(values, size)


def clean_text(text: str) -> str:
    """``text`` as every database takes it: NULs (PostgreSQL's text refuses them) and lone surrogates (not
    encodable as UTF-8) become replacement characters."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def cleaned(row: Row) -> Row:
    """A refused row made storable: texts cleaned, integers outside 64 bits left out (the context keeps them)."""
    values: dict[str, Any] = {}
    for name, value in row.values.items():
        if isinstance(value, str):
            value = clean_text(value)
        elif isinstance(value, int) and not isinstance(value, bool) and value not in INT64:
            value = None
        values[name] = value
    return Row(values, row.size)


def is_transient(exc: BaseException) -> bool:
    """Whether writing may succeed later (the database is unreachable, restarting, locked or full) rather than
    being refused for the rows' values, as it would be again on every retry."""
    if isinstance(exc, asyncpg.PostgresError):
        # The driver's own complaints about an argument come as class 22 too.
        return str(exc.sqlstate or "")[:2] not in REFUSAL_SQLSTATE_CLASSES
    # Python's own refusals (an integer beyond 64 bits, text not encodable as UTF-8) and SQLite's. Everything else
    # is kept and retried, as the queue is bounded anyway: OSError and TimeoutError (no connection), asyncpg's
    # InterfaceError (connection lost, pool closing), sqlite3.OperationalError (file gone, locked, read-only, disk
    # full) and anything unforeseen.
    return not isinstance(exc, ValueError | ArithmeticError | TypeError | sqlite3.DataError | sqlite3.IntegrityError)


def accepts(record: Record) -> bool:
    """The sink's filter: nothing logged while it writes, nothing from the database drivers."""
    if _writing.get():
        return False
    name = record["name"] or ""
    return not name.startswith(DRIVER_LOGGERS)


@dataclass(frozen=True, slots=True)
class SinkLimits:
    """How much the queue holds and how the writer paces itself."""

    max_records: int = MAX_RECORDS
    max_bytes: int = MAX_BYTES
    batch_size: int = BATCH_SIZE
    flush_interval: float = FLUSH_INTERVAL_S
    retry_max: float = RETRY_MAX_S
    write_timeout: float = WRITE_TIMEOUT_S
    drain_timeout: float = DRAIN_TIMEOUT_S


DEFAULT_LIMITS = SinkLimits()


@dataclass
class SinkStats:
    written: int = 0
    dropped: int = 0
    peak: int = 0
    failures: int = 0
    last_error: str = ""
    cleaned: int = 0
    refused: int = 0
    unreported_drops: int = field(default=0, repr=False)


class DatabaseSink:
    """A loguru sink (``write``) plus the task that stores what it queued (``start``/``flush``/``stop``)."""

    def __init__(self, engine: Engine[Any], redactor: Redactor, limits: SinkLimits = DEFAULT_LIMITS) -> None:
        if not 0 < limits.batch_size < limits.max_records:
            raise ValueError("batch_size must be positive and smaller than max_records")
        self.limits = limits
        self.stats = SinkStats()
        self._engine = engine
        self._redactor = redactor
        self._lock = threading.Lock()
        self._rows: deque[Row] = deque()
        self._bytes = 0
        self._in_flight: list[Row] = []
        self._in_flight_bytes = 0
        self._failing = False
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    # --- the caller's side: any thread, never waits for the database ------------------------------------

    def write(self, message: Message) -> None:
        row = row_from(message.record, self._redactor)
        with self._lock:
            self._rows.append(row)
            self._bytes += row.size
            self._trim()
            queued = len(self._rows) + len(self._in_flight)
            self.stats.peak = max(self.stats.peak, queued)
            wake = len(self._rows) == self.limits.batch_size and not self._failing
        if wake:
            self._wake_writer()

    def _trim(self) -> None:
        """Drop the oldest queued rows while over the bound (rows being written count towards it)."""
        while self._rows and (
            len(self._rows) + len(self._in_flight) > self.limits.max_records
            or self._bytes + self._in_flight_bytes > self.limits.max_bytes
        ):
            dropped = self._rows.popleft()
            self._bytes -= dropped.size
            self.stats.dropped += 1
            self.stats.unreported_drops += 1

    def _wake_writer(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        if threading.get_ident() == self._loop_thread:
            wake.set()
            return
        # The loop may be closing; then the final drain picks the rows up or reports them.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(wake.set)

    @property
    def queued(self) -> int:
        """Records waiting in memory, including the batch being written."""
        with self._lock:
            return len(self._rows) + len(self._in_flight)

    # --- the writer's side: the event loop ---------------------------------------------------------------

    def start(self) -> None:
        """Start the writer task on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="pomogator-log-writer")

    async def flush(self, timeout: float = 5.0) -> bool:  # noqa: ASYNC109 (a bound on a background drain)
        """Wait until everything queued so far is written; False if that did not happen within ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.queued:
            if self._task is None or self._task.done() or loop.time() >= deadline:
                return False
            if self._wake is not None and not self._failing:
                self._wake.set()
            await asyncio.sleep(0.01)
        return True

    async def stop(self) -> None:
        """Write what is queued (for at most ``limits.drain_timeout`` seconds), then stop the writer."""
        task = self._task
        if task is None:
            return
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), self.limits.drain_timeout)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        self._loop = None
        left = self.queued
        self._report_drops()
        if left:
            logger.warning("{} log records could not be written to the database before shutdown", left)

    async def _run(self) -> None:
        delay = self.limits.flush_interval
        while True:
            with self._lock:
                pending = len(self._rows)
            if not pending:
                if self._stopping:
                    return
                await self._sleep(self.limits.flush_interval)
                continue
            if await self._write_batch():
                delay = self.limits.flush_interval
                self._report_drops()
                with self._lock:
                    full = len(self._rows) >= self.limits.batch_size
                if not full and not self._stopping:
                    await self._sleep(self.limits.flush_interval)
            else:
                await self._sleep(delay)
                delay = min(delay * 2, self.limits.retry_max)

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    def _take(self) -> list[Row]:
        with self._lock:
            batch = [self._rows.popleft() for _ in range(min(self.limits.batch_size, len(self._rows)))]
            size = sum(row.size for row in batch)
            self._bytes -= size
            self._in_flight, self._in_flight_bytes = batch, size
        return batch

    def _settle(self, count: int, *, written: bool) -> None:
        """The first ``count`` rows of the batch being written are done with: stored, or given up on."""
        with self._lock:
            done, self._in_flight = self._in_flight[:count], self._in_flight[count:]
            self._in_flight_bytes -= sum(row.size for row in done)
            if written:
                self.stats.written += count
            else:
                self.stats.refused += count

    def _requeue(self) -> None:
        """Put the rows of the batch that were not written back in front (they are the oldest)."""
        with self._lock:
            rows, self._in_flight, self._in_flight_bytes = self._in_flight, [], 0
            self._rows.extendleft(reversed(rows))
            self._bytes += sum(row.size for row in rows)
            self._trim()

    async def _write_batch(self) -> bool:
        batch = self._take()
        token = _writing.set(True)
        try:
            try:
                await self._store(batch)
            except Exception as exc:  # a failing database must never take the program down
                if is_transient(exc):
                    self._note_failure(exc)
                    return False
                # Something in the batch was refused: find it by writing the rows one at a time.
                if not await self._write_one_at_a_time(batch):
                    return False
            else:
                self._settle(len(batch), written=True)
        finally:
            # Whatever is not written goes back in front: after a transient failure, or when cancelled at shutdown
            # (then the rows are reported as not written).
            self._requeue()
            _writing.reset(token)
        self._failing = False
        return True

    async def _write_one_at_a_time(self, batch: list[Row]) -> bool:
        """Store the rows of a refused batch one by one, a refused row cleaned or else dropped; False when the
        database failed transiently on the way (the rows not written yet stay queued)."""
        for row in batch:
            try:
                await self._store([row])
            except Exception as exc:
                if is_transient(exc):
                    self._note_failure(exc)
                    return False
                if not await self._store_cleaned(row):
                    return False
            else:
                self._settle(1, written=True)
        return True

    async def _store_cleaned(self, row: Row) -> bool:
        try:
            await self._store([cleaned(row)])
        except Exception as exc:
            if is_transient(exc):
                self._note_failure(exc)
                return False
            self._settle(1, written=False)
            # Said while ``_writing`` is set: the notice goes to stderr, not into the queue again.
            logger.warning(
                "A log record was refused by the database and dropped ({}: {}); it began {!r}",
                type(exc).__name__,
                clip(str(exc), 300),
                str(row.values["message"])[:100],
            )
            return True
        self._settle(1, written=True)
        self.stats.cleaned += 1
        return True

    async def _store(self, rows: list[Row]) -> None:
        # An unreachable database fails the write at once: the sink keeps the rows and retries on its own schedule.
        with impatient():
            async with asyncio.timeout(self.limits.write_timeout):
                await self._insert(rows)

    async def _insert(self, batch: list[Row]) -> None:
        query = LogRecord.insert(*(LogRecord(**row.values) for row in batch))
        for querystring in query.querystrings:
            if isinstance(self._engine, SharedConnectionSQLiteEngine):
                # Diagnostics, not data: on SQLite's one worker thread a flush per batch would hold every chat
                # message's statements behind it, and most when errors are logged in bursts.
                await self._engine.run_lazily(querystring)
            else:
                await self._engine.run_querystring(querystring)

    def _note_failure(self, exc: Exception) -> None:
        """Say once per outage that writes fail (called while ``_writing`` is set: the notice stays out of the
        queue)."""
        self.stats.failures += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        if not self._failing:
            self._failing = True
            logger.warning(
                "Log records cannot be written to the database ({}); keeping up to {} in memory",
                self.stats.last_error,
                self.limits.max_records,
            )

    def _report_drops(self) -> None:
        with self._lock:
            dropped, self.stats.unreported_drops = self.stats.unreported_drops, 0
        if dropped:
            logger.warning(
                "{} log records were dropped: the in-memory queue ({} records) was full while the database was "
                "unavailable or slow",
                dropped,
                self.limits.max_records,
            )
