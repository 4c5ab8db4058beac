"""Engine selection from ``POMOGATOR_DATABASE_URL`` and the database's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import io
import os
import re
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, SQLiteTransaction, TransactionType, dict_factory
from piccolo.querystring import QueryString
from piccolo.table import Table

from pomogator.config import check_url, url_authority, url_passwords
from pomogator.errors import ConfigError
from pomogator.logs.redact import Redactor
from pomogator.store.outage import RECONNECT_WAIT_S, PatientConnect, impatient, outage_of
from pomogator.store.sqlite_transaction import ClosingSQLiteTransaction

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")
SQLITE_BUSY_TIMEOUT_S = 30.0
# How long opening a PostgreSQL connection may take, its start-up and authentication included. asyncpg's default is a
# minute: a host that drops packets (a firewall, a server gone from the network) held a start or a user's message
# that long before anyone heard of it.
POSTGRES_CONNECT_TIMEOUT_S = 10.0
# While PostgreSQL is known to be away, how often ``Database.reachable`` tries it again.
PROBE_EVERY_S = 1.0
APP_NAME = "pomogator"
# The PostgreSQL advisory lock that one migrating process holds ("pomog" in ASCII).
MIGRATION_LOCK_KEY = 0x706F6D6F67
MIGRATION_ID = re.compile(r"""^ID = ["']([^"']+)["']""", re.MULTILINE)
PICCOLO_CONF = "pomogator.store.piccolo_conf"
# What opening a database raises when it cannot be reached or used: the server is down or unknown, refuses the user
# or has no such database, the SQLite file is a folder or not a database.
CONNECTION_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, sqlite3.Error)


def shipped_migrations(folder: Path | None = None) -> dict[str, str]:
    """``{ID: module name}`` of every migration module in ``piccolo_migrations`` (or ``folder``), read from the files
    without importing them, in the order Piccolo applies them: by ID.

    A new migration is ``pomogator_NNNN_<what>.py``, NNNN the next number, and its ID must be greater than every
    shipped one (``tests/store/test_migrations.py`` checks it), or a database that has not applied those yet would
    apply it before them. Piccolo's generator (``piccolo migrations new pomogator --auto``) writes the current time,
    and 0009-0011 were dated ahead of their time (up to ``2026-11-30T10:00:00:000000``): until the clock has passed
    the last shipped ID, write the ID by hand as that ID plus one second, in the same format.
    """
    if folder is None:
        import piccolo_migrations

        folder = Path(piccolo_migrations.__file__).parent
    found: dict[str, str] = {}
    for module in folder.glob("*.py"):
        match = MIGRATION_ID.search(module.read_text(encoding="utf-8"))
        if match is not None:
            found[match.group(1)] = module.stem
    # Piccolo sorts the IDs as strings; in their format ("2026-11-30T10:00:00:000000") that is their time order.
    return {migration: found[migration] for migration in sorted(found)}


def shipped_migration_ids() -> list[str]:
    """The ``ID`` of every migration module in ``piccolo_migrations``, in the order Piccolo applies them."""
    return list(shipped_migrations())


def pending_of(applied: set[str]) -> list[str]:
    """The IDs of the shipped migrations not among ``applied``, in order."""
    return [migration for migration in shipped_migration_ids() if migration not in applied]


def unknown_migrations(applied: set[str]) -> list[str]:
    """The IDs among ``applied`` that this version does not ship (a newer version applied them), in order."""
    return sorted(applied - set(shipped_migrations()))


def sqlite_path(url: str) -> Path | None:
    """The file of an ``sqlite:///relative`` or ``sqlite:////absolute`` URL, None for other engines."""
    if not url.startswith(SQLITE_PREFIX):
        return None
    path = url.removeprefix(SQLITE_PREFIX)
    if not path:
        raise ConfigError("POMOGATOR_DATABASE_URL: an sqlite URL needs a file, e.g. sqlite:///pomogator.sqlite3")
    return Path(path)


class SharedConnectionSQLiteEngine(SQLiteEngine):
    """Piccolo's SQLiteEngine with one connection for all queries outside a transaction.

    Piccolo opens a new connection, and aiosqlite a new thread, for every such query: far more work than the query
    itself. Here they run one after another on one connection in one worker thread, in autocommit mode as before
    (each statement commits by itself; nothing is cached between statements, so other processes see every write at
    once). Transactions still get a connection of their own. Like a new connection, each query reaches the file
    that is at the path now: when it was moved, replaced or deleted, the connection is opened again.

    A statement run with ``lazy_commit`` (those of a chat message: the sender's upsert, the quota reservation, the
    stored answer; and stored log records, ``run_lazily``) commits without waiting for the disk: ``PRAGMA
    synchronous = NORMAL``, which in WAL mode hands the commit to the operating system, not the disk. Every other
    statement waits for its flush (``FULL``, SQLite's default), as before. Otherwise each message's commits flushed
    the file on the one worker thread every statement of the process queues on, and one slow flush held every
    message behind it (PostgreSQL's message statements make the same trade, ``ASYNC_COMMIT_CTE``). A crash of the
    process loses nothing; a power cut or a crash of the machine may lose the last of those commits (requests not
    counted, turns not in the context); the next commit that waits for the disk takes them along.
    """

    def __init__(self, path: str, **connection_kwargs: Any) -> None:
        super().__init__(path=path, **connection_kwargs)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._connection: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None
        self._lazy: bool | None = None  # the shared connection's commits: lazy (NORMAL), FULL, or not set yet

    def transaction(
        self, transaction_type: TransactionType = TransactionType.deferred, allow_nested: bool = True
    ) -> SQLiteTransaction:
        """Piccolo's transaction, closing its connection however it ends (``ClosingSQLiteTransaction``)."""
        return ClosingSQLiteTransaction(engine=self, transaction_type=transaction_type, allow_nested=allow_nested)

    def _identity(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.connection_kwargs["database"])
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def _connected(self) -> sqlite3.Connection:
        """The shared connection, opened again when the file at the path is not the one it has open."""
        if self._connection is not None and self._identity() != self._file:
            self._close()
        if self._connection is None:
            connection = sqlite3.connect(**self.connection_kwargs, check_same_thread=False)
            connection.row_factory = dict_factory
            connection.execute("PRAGMA foreign_keys = 1")
            self._connection, self._file, self._lazy = connection, self._identity(), None
        return self._connection

    def _commits(self, connection: sqlite3.Connection, lazy: bool, query: str = "") -> sqlite3.Connection:
        """``connection`` with its commits set to wait for the disk or not; changed only when it differs (a query
        that only reads leaves it as it is), so a run of chat messages costs no statement more. Outside WAL mode
        (the file could not be switched to it) every commit waits: with a rollback journal, ``NORMAL`` may leave a
        file damaged after a power cut, not only without its last commits."""
        if self._lazy is lazy or query.startswith("SELECT"):
            return connection
        if lazy and connection.execute("PRAGMA journal_mode").fetchone()["journal_mode"] != "wal":
            lazy = False
        if self._lazy is not lazy:
            connection.execute(f"PRAGMA synchronous = {'NORMAL' if lazy else 'FULL'}")
            self._lazy = lazy
        return connection

    @staticmethod
    def _fetch(connection: sqlite3.Connection, query: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        cursor = connection.execute(query, args)
        try:
            rows: list[dict[str, Any]] = cursor.fetchall()
        finally:
            cursor.close()
        return rows

    def _execute(self, query: str, args: Sequence[Any], lazy: bool) -> list[dict[str, Any]]:
        return self._fetch(self._commits(self._connected(), lazy, query), query, args)

    async def _run_in_new_connection(
        self,
        query: str,
        args: list[Any] | None = None,
        query_type: str = "generic",
        table: type[Table] | None = None,
    ) -> Any:
        if self._reads_new_key_itself(query_type):
            return await super()._run_in_new_connection(query, args, query_type, table)
        return await self.fetch(query, args or [])

    def _reads_new_key_itself(self, query_type: str) -> bool:
        """No RETURNING before SQLite 3.35: Piccolo reads an insert's new key on the connection it ran on."""
        return query_type == "insert" and self.get_version_sync() < 3.35

    def _execute_atomically(self, statements: Sequence[tuple[str, Sequence[Any]]], lazy: bool) -> None:
        # One connection for the whole transaction, even if the file is replaced.
        connection = self._commits(self._connected(), lazy)
        connection.execute("BEGIN IMMEDIATE")
        try:
            for query, args in statements:
                self._fetch(connection, query, args)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    async def fetch(self, query: str, args: Sequence[Any], *, lazy_commit: bool = False) -> list[dict[str, Any]]:
        """Run one statement (``?`` placeholders) on the shared connection; the rows as dicts."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, self._execute, query, args, lazy_commit)

    async def run_lazily(self, querystring: QueryString) -> None:
        """Run a Piccolo query's statement like ``run_querystring``; outside a transaction it goes to the shared
        connection and commits without waiting for the disk."""
        if self.current_transaction.get() is not None or self._reads_new_key_itself(querystring.query_type):
            await self.run_querystring(querystring)
            return
        query, args = querystring.compile_string(engine_type=self.engine_type)
        await self.fetch(query, args, lazy_commit=True)

    async def execute_atomically(
        self, statements: Sequence[tuple[str, Sequence[Any]]], *, lazy_commit: bool = False
    ) -> None:
        """Run ``statements`` (``?`` placeholders) as one write transaction on the shared connection.

        On the one worker thread nothing else runs in between, so the transaction neither waits for nor blocks this
        process's other statements in SQLite's lock, as one on a connection of its own would; and it costs one
        hop to the thread instead of one per statement.
        """
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._worker, self._execute_atomically, statements, lazy_commit)

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close_connection(self) -> None:
        """Close the shared connection (it is opened again on the next query)."""
        await asyncio.get_running_loop().run_in_executor(self._worker, self._close)


ASYNC_COMMIT_CTE = "async_commit AS (SELECT set_config('synchronous_commit', 'off', true))"
"""PostgreSQL: a common table expression that makes the statement's own transaction commit without waiting for its
WAL to reach the disk (joined into the statement with ``CROSS JOIN async_commit``; ``true``: for this transaction
only, the connection's next statement commits as before).

Used by the two statements of a chat message: every message's first one waited out each slow flush of the server's
disk before the answer could start (one flush of this machine's disk took 1.2 s in 40 s of probing, and held every
message in flight). A server crash (not a restart) may lose the last fraction of a second of them: those requests
are not counted and those turns are not in the context. Payments, subscriptions and every other write commit as
before. The database stays consistent either way: only the durability of those last transactions differs."""


async def raw(table: type[Table], sql: str, *args: Any, lazy_commit: bool = False) -> Sequence[Mapping[str, Any]]:
    """``table.raw(sql, *args)``: ``{}`` placeholders, the rows as read-only mappings of column to value.
    ``lazy_commit``: on SQLite the statement commits without waiting for the disk (``SharedConnectionSQLiteEngine``);
    PostgreSQL's statements say so in their SQL (``ASYNC_COMMIT_CTE``).

    Outside a transaction (every statement of a chat message) the statement goes straight to PostgreSQL's pool or
    SQLite's shared connection: Piccolo's query building and result handling around one short statement cost more
    CPU than the database driver's part. The SQL is the same either way; it is compiled once per statement text.
    PostgreSQL's rows are asyncpg's records as they come (copied into dicts, a chat's context of up to 200 turns
    cost ~1 % of the bot's CPU per message).
    """
    engine = table._meta.db
    if engine.current_transaction.get() is None:
        if isinstance(engine, PostgresEngine) and engine.pool is not None:
            try:
                records: list[Mapping[str, Any]] = await engine.pool.fetch(_numbered_placeholders(sql), *args)
            except Exception as exc:
                # A connection lost in the middle of the statement: whether the server did it is unknown, so it is
                # not repeated; the caller hears of an outage, not of a driver's error.
                outage = outage_of(exc)
                if outage is None:
                    raise
                raise outage from exc
            return records
        if isinstance(engine, SharedConnectionSQLiteEngine):
            return await engine.fetch(question_marks(sql), args, lazy_commit=lazy_commit)
    result: list[dict[str, Any]] = await table.raw(sql, *args)
    return result


@functools.lru_cache(maxsize=64)
def question_marks(sql: str) -> str:
    """``{}`` placeholders as SQLite's ``?``, as Piccolo compiles them."""
    return sql.replace("{}", "?")


@functools.lru_cache(maxsize=64)
def _numbered_placeholders(sql: str) -> str:
    """``{}`` placeholders as PostgreSQL's ``$1``, ``$2``…, in order, as Piccolo compiles them."""
    parts = sql.split("{}")
    numbered = [parts[0]]
    for index, part in enumerate(parts[1:], start=1):
        numbered.append(f"${index}{part}")
    return "".join(numbered)


class QuietPostgresEngine(PostgresEngine):
    """Piccolo's PostgresEngine without its version check, which connects once more as the engine is made and
    reports a failure as a raw warning on stderr, with the driver's reading of the URL (pieces of a password among
    them). ``Database.start`` connects next and reports a failure as one line instead."""

    async def check_version(self) -> None:
        return None


def engine_from_url(url: str) -> Engine[Any]:
    path = sqlite_path(url)
    if path is not None:
        return SharedConnectionSQLiteEngine(path=str(path), timeout=SQLITE_BUSY_TIMEOUT_S)
    if url.startswith(POSTGRES_PREFIXES):
        try:
            check_url(url)
        except ValueError as exc:
            raise ConfigError(f"POMOGATOR_DATABASE_URL: {exc}") from None
        return QuietPostgresEngine(config={"dsn": url, "timeout": POSTGRES_CONNECT_TIMEOUT_S})
    raise ConfigError("POMOGATOR_DATABASE_URL must start with sqlite:///, postgresql:// or postgres://")


def database_location(url: str) -> str:
    """Where ``url`` points, for messages: ``host:port/database`` or the SQLite file, never the user or password."""
    path = sqlite_path(url)
    if path is not None:
        return str(path)
    _, hosts, rest = url_authority(url)
    return (hosts or "PostgreSQL") + rest.partition("?")[0]


def connection_failure(url: str, exc: BaseException) -> ConfigError:
    """A one-line ConfigError for a database that cannot be opened: where it is and why, never the URL itself."""
    # An OSError's strerror is without its "[Errno 111]"; the database's own message says what it refused.
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if isinstance(exc, TimeoutError) and not reason:
        reason = f"no answer within {POSTGRES_CONNECT_TIMEOUT_S:g} s"
    reason = " ".join(reason.split()) or "no answer"
    reason = Redactor(url_passwords(url)).text(f"{reason} ({type(exc).__name__})")
    return ConfigError(f"Cannot use the database {database_location(url)}: {reason}")


def write_transaction(engine: Engine[Any]) -> Any:
    """A write transaction (or the one already open): ``BEGIN IMMEDIATE`` on SQLite, so writers queue, not fail."""
    if isinstance(engine, SQLiteEngine):
        return engine.transaction(transaction_type=TransactionType.immediate)
    return engine.transaction()


def bind_engine(engine: Engine[Any]) -> None:
    """Make every table (ours and Piccolo's migration table) and Piccolo's config use ``engine``.

    Piccolo's config module is only loaded to migrate (it imports Piccolo's app registry, and that imports black):
    when it is loaded already it is pointed at ``engine`` here, otherwise when it is first needed.
    """
    from piccolo.apps.migrations.tables import Migration

    from pomogator.store.tables import TABLES

    config = sys.modules.get(PICCOLO_CONF)
    if config is not None:
        config.DB = engine  # type: ignore[attr-defined]  # a plain module found in sys.modules
    tables: tuple[type[Table], ...] = (*TABLES, Migration)
    for table in tables:
        table._meta.db = engine


class Database:
    """The database a process talks to: engine, pool, transactions and migrations."""

    def __init__(
        self, url: str, *, pool_min: int = 1, pool_max: int = 20, reconnect_wait: float = RECONNECT_WAIT_S
    ) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self.engine = engine_from_url(url)
        self._pool = (pool_min, pool_max)
        self._pool_started = False
        self._connect = PatientConnect(reconnect_wait)
        self._last_probe = float("-inf")

    @property
    def is_sqlite(self) -> bool:
        return self.path is not None

    async def start(self, *, migrate: bool | None = None) -> None:
        """Bind the engine, apply pending migrations (SQLite by default; ``migrate=False`` writes nothing to the
        database), start the pool.

        Raises ConfigError naming the database (never its URL) when it cannot be reached or used.
        """
        try:
            await self._start(migrate=migrate)
        except CONNECTION_ERRORS as exc:
            raise connection_failure(self.url, exc) from None

    async def _start(self, *, migrate: bool | None) -> None:
        bind_engine(self.engine)
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                message = f"POMOGATOR_DATABASE_URL: cannot create {self.path.parent} ({exc.strerror})"
                raise ConfigError(message) from None
            create_private(self.path)
            # Read once, so that a file that is not a database (or a folder) is a ConfigError here, as when migrating.
            await self.engine.run_ddl("SELECT count(*) FROM sqlite_master")
        if migrate if migrate is not None else self.is_sqlite:
            await self.migrate()
        if isinstance(self.engine, PostgresEngine):
            await self.engine.start_connection_pool(
                min_size=self._pool[0], max_size=self._pool[1], reset=_keep_session, connect=self._connect
            )
            self._pool_started = True
            # From now on a server that refuses connections is waited for (``PatientConnect``); at start it is not.
            self._connect.serving = True

    async def close(self) -> None:
        if self._pool_started and isinstance(self.engine, PostgresEngine):
            await self.engine.close_connection_pool()
            self._pool_started = False
        if isinstance(self.engine, SharedConnectionSQLiteEngine):
            await self.engine.close_connection()

    def transaction(self) -> Any:
        """A write transaction: ``BEGIN IMMEDIATE`` on SQLite so concurrent writers queue instead of failing."""
        return write_transaction(self.engine)

    async def reachable(self) -> bool:
        """False while PostgreSQL has refused connections for longer than the reconnect wait (a request would be
        refused at once): then, at most once a second, one connection is tried to learn whether it is back."""
        if not self._connect.gave_up:
            return True
        now = asyncio.get_running_loop().time()
        if now - self._last_probe < PROBE_EVERY_S:
            return False
        self._last_probe = now
        with contextlib.suppress(Exception):
            await self.ping()
        return not self._connect.gave_up

    async def ping(self) -> None:
        """One short statement; an outage fails it at once instead of being waited out. Its answer is what
        ``reachable`` goes by: a failure starts an outage (a dropped connection fails it before any reconnect is
        tried), an answer ends one (even on a connection that stayed open)."""
        try:
            with impatient():
                await self.engine.run_ddl("SELECT 1")
        except Exception as exc:
            if outage_of(exc) is not None or isinstance(exc, OSError):
                self._connect.down()
            raise
        self._connect.up()

    async def migrate(self) -> list[str]:
        """Apply pending migrations; idempotent, and safe to run from several processes at once (one migrates, the
        others wait and find nothing left). Returns the IDs of the migrations applied now, in order. An SQLite file
        is switched to WAL first. Raises ConfigError when the database has migrations this version does not know
        (``refuse_unknown``).

        Piccolo's report is only quoted when a migration fails: it counts every shipped migration as "already
        complete", even on a new database."""
        buffer = io.StringIO()
        async with self._migration_lock():
            if self.is_sqlite:
                # Here, not when any process opens the file: a command that only reads (`user list` on a file that
                # may not even be ours) changes nothing in it. Switching a new file to WAL fails at once (no busy
                # wait) while another process switches it too: the processes take turns under the migration lock.
                await self.engine.run_ddl("PRAGMA journal_mode=WAL")
            with contextlib.redirect_stdout(buffer):
                applied = await self.applied_migrations()
                self.refuse_unknown(applied)
                pending = pending_of(applied)
                if not pending:
                    # Piccolo's migration machinery imports black and its dependencies (~9 MiB that a server keeps
                    # for its lifetime); a restart with nothing to apply does not load it.
                    return []
                from piccolo.apps.migrations.commands.forwards import run_forwards

                from pomogator.store import piccolo_conf

                piccolo_conf.DB = self.engine
                result = await run_forwards(app_name=APP_NAME, migration_id="all")
                if result.success:
                    left = set(await self.pending_migrations())
                    return [migration for migration in pending if migration not in left]
        lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
        raise ConfigError(f"Database migration failed: {result.message or '; '.join(lines[-3:])}")

    async def require_migrated(self) -> None:
        """Raises ConfigError when the database lacks migrations of this version: new code would fail on the
        tables or columns they add, statement by statement, instead of once, here. Also when it has migrations
        this version does not know (``refuse_unknown``)."""
        applied = await self.applied_migrations()
        self.refuse_unknown(applied)
        pending = pending_of(applied)
        if pending and len(pending) == len(shipped_migration_ids()):
            raise ConfigError(
                f"The database {database_location(self.url)} has no Pomogator tables (a new database, or not "
                "Pomogator's: check POMOGATOR_DATABASE_URL): run `pomogator db migrate` to set it up."
            )
        if pending:
            count = f"{len(pending)} migration{'s' if len(pending) > 1 else ''}"
            raise ConfigError(
                f"The database {database_location(self.url)} lacks {count} of this version: "
                "run `pomogator db migrate` first."
            )

    def refuse_unknown(self, applied: set[str]) -> None:
        """Raises ConfigError when ``applied`` holds migrations this version does not ship: a newer version migrated
        the database (a rollback to this version without restoring the dump taken before the upgrade). This version's
        code may not work on the tables as they are now, and its migrations cannot undo that."""
        unknown = unknown_migrations(applied)
        if unknown:
            count = f"{len(unknown)} migration{'s' if len(unknown) > 1 else ''}"
            raise ConfigError(
                f"The database {database_location(self.url)} has {count} this version does not know "
                f"({', '.join(unknown)}): a newer version of Pomogator migrated it. Run that version, or restore the "
                "dump taken before it was installed."
            )

    async def pending_migrations(self) -> list[str]:
        """The IDs of the shipped migrations this database has not applied yet."""
        return pending_of(await self.applied_migrations())

    async def applied_migrations(self) -> set[str]:
        """The IDs of the migrations applied to this database, this version's and any others."""
        from piccolo.apps.migrations.tables import Migration

        if not await Migration.table_exists():
            return set()
        rows = await Migration.select(Migration.name).where(Migration.app_name == APP_NAME).output(as_list=True)
        return set(rows)

    @contextlib.asynccontextmanager
    async def _migration_lock(self) -> AsyncIterator[None]:
        """Bot, web and CLI may start together (compose, several hosts): one of them migrates, the others wait."""
        if not isinstance(self.engine, PostgresEngine):
            with self._file_lock():
                yield
            return
        # A session lock on a connection of its own: Piccolo runs the migrations on connections it opens.
        connection = await asyncpg.connect(**self.engine.config)
        try:
            await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
            yield
        finally:
            await connection.close()  # the lock goes with the session

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """SQLite's migration lock: a lock file beside the database."""
        if self.path is None:
            yield
            return
        lock_path = self.path.with_name(self.path.name + ".migrate.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def create_private(path: Path) -> None:
    """Create the SQLite file ``path``, unless it exists, readable and writable by its owner alone, as SQLite then
    makes its journal files: it holds people's dialogs, e-mail addresses and payments, and would otherwise be
    created readable by every user of the machine (umask 022). A file that exists is left as it is."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


async def _keep_session(connection: Any) -> None:
    """Replaces asyncpg's reset of a connection returned to the pool, a round trip after every query
    (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``). We leave no session state behind: advisory
    locks are transaction-scoped, and there are no cursors, LISTENs or SETs. asyncpg still rolls back a
    transaction left open before calling this."""


@contextlib.asynccontextmanager
async def open_database(url: str, *, migrate: bool | None = None) -> AsyncIterator[Database]:
    database = Database(url)
    await database.start(migrate=migrate)
    try:
        yield database
    finally:
        await database.close()
