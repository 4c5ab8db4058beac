"""The store: database URLs, migrations on both engines, SQLite's WAL mode, write transactions and migration lock."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import stat
import sys
import textwrap
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from piccolo.apps.migrations.tables import Migration
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

import piccolo_migrations
from pomogator.container import build_services
from pomogator.errors import ConfigError
from pomogator.store import engine as engine_module
from pomogator.store.engine import (
    Database,
    SharedConnectionSQLiteEngine,
    _numbered_placeholders,
    engine_from_url,
    open_database,
    raw,
    shipped_migration_ids,
    sqlite_path,
)
from pomogator.store.tables import TABLES, DailyUsage, QuotaGiveBack, User
from tests.conftest import POSTGRES_URL, make_settings
from tests.databases import throwaway_postgres
from tests.store.support import migrate_up_to

REPO_ROOT = Path(__file__).resolve().parents[2]
MIGRATION_COUNT = len([p for p in Path(piccolo_migrations.__file__).parent.glob("*.py") if p.name != "__init__.py"])


# --- URLs ------------------------------------------------------------------------------------------------


def test_sqlite_urls() -> None:
    assert sqlite_path("sqlite:////var/lib/pomogator/db.sqlite3") == Path("/var/lib/pomogator/db.sqlite3")
    assert sqlite_path("sqlite:///data/db.sqlite3") == Path("data/db.sqlite3")
    assert sqlite_path("postgresql://localhost/db") is None
    assert isinstance(engine_from_url("sqlite:////tmp/x.sqlite3"), SQLiteEngine)


# Piccolo asks the server for its version when the engine is made, and only warns when nobody answers.
@pytest.mark.filterwarnings("ignore:.*Unable to fetch server version")
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgres_urls(scheme: str) -> None:
    url = f"{scheme}://user:secret@127.0.0.1:1/pomogator"
    engine = engine_from_url(url)
    assert isinstance(engine, PostgresEngine)
    assert engine.config == {"dsn": url, "timeout": engine_module.POSTGRES_CONNECT_TIMEOUT_S}
    assert not Database(url).is_sqlite


@pytest.mark.parametrize(
    "url",
    ["", "mysql://localhost/db", "sqlite://relative.sqlite3", "sqlite:///", "pomogator.sqlite3", "http://x"],
)
def test_bad_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="POMOGATOR_DATABASE_URL"):
        Database(url)


async def test_the_pool_size_setting_bounds_the_processes_connections(postgres_url: str) -> None:
    async with build_services(make_settings(database_url=postgres_url, database_pool_size=3)) as services:
        engine = services.database.engine
        assert isinstance(engine, PostgresEngine) and engine.pool is not None
        assert engine.pool.get_max_size() == 3
        # Six statements at once on three connections: each waits its turn, none fails.
        rows = await asyncio.gather(*(raw(User, "SELECT pg_sleep(0.05), 1 AS one") for _ in range(6)))
        assert [row[0]["one"] for row in rows] == [1] * 6
        assert engine.pool.get_size() == 3


async def test_a_database_host_that_never_answers_fails_the_start_with_a_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A listener that takes connections and never says a word, as a server behind a broken network path looks.
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(engine_module, "POSTGRES_CONNECT_TIMEOUT_S", 0.5)
    database = Database(f"postgresql://pomogator:secret@127.0.0.1:{port}/pomogator")
    try:
        with pytest.raises(ConfigError) as caught:
            await database.start()
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert str(caught.value) == (
        f"Cannot use the database 127.0.0.1:{port}/pomogator: no answer within 0.5 s (TimeoutError)"
    )
    assert held  # it did connect: the limit covers the database's start-up, not only the TCP handshake


async def test_bad_url_fails_build_services() -> None:
    with pytest.raises(ConfigError, match="POMOGATOR_DATABASE_URL"):
        async with build_services(make_settings(database_url="mysql://localhost/db")):
            pass


async def test_absolute_sqlite_path(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "abs.sqlite3"
    path.parent.mkdir()
    async with open_database(f"sqlite:///{path}") as database:
        assert database.path == path
        assert database.is_sqlite
        await database.ping()
        assert await User.count() == 0
    assert path.exists()


async def test_sqlite_file_in_a_new_directory(tmp_path: Path) -> None:
    path = tmp_path / "data" / "pomogator" / "db.sqlite3"
    async with open_database(f"sqlite:///{path}"):
        assert await User.count() == 0
    assert path.exists()


async def test_a_new_sqlite_file_and_its_journal_are_for_their_owner_alone(tmp_path: Path) -> None:
    path = tmp_path / "private.sqlite3"
    old_umask = os.umask(0o022)
    try:
        async with open_database(f"sqlite:///{path}") as database:
            await User.insert(User(telegram_id=1, first_name="Анна"))
            files = [path, path.with_name(path.name + "-wal")]
            assert [stat.S_IMODE(file.stat().st_mode) for file in files] == [0o600, 0o600]
            assert database.path == path
        # A file that was there is left as it is.
        shared = tmp_path / "shared.sqlite3"
        sqlite3.connect(shared).close()
        async with open_database(f"sqlite:///{shared}"):
            pass
        assert stat.S_IMODE(shared.stat().st_mode) == 0o644
    finally:
        os.umask(old_umask)


async def test_sqlite_directory_that_cannot_be_made_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="POMOGATOR_DATABASE_URL"):
        async with open_database(f"sqlite:///{blocker / 'db.sqlite3'}"):
            pass


async def test_relative_sqlite_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with open_database("sqlite:///relative.sqlite3"):
        assert await User.count() == 0
    assert (tmp_path / "relative.sqlite3").exists()


@pytest.mark.skipif(not POSTGRES_URL, reason="POMOGATOR_TEST_POSTGRES_URL is not set")
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_both_postgres_schemes_connect(postgres_url: str, scheme: str) -> None:
    url = scheme + "://" + postgres_url.split("://", 1)[1]
    async with open_database(url) as database:
        assert not database.is_sqlite
        await database.ping()
        assert await User.count() >= 0


# --- migrations ------------------------------------------------------------------------------------------


async def test_migrations_are_idempotent(db_url: str) -> None:
    database = Database(db_url)
    await database.start(migrate=True)
    try:
        assert await Migration.count().where(Migration.app_name == "pomogator") == MIGRATION_COUNT
        await User.insert(User(telegram_id=1, first_name="Kept"))
        await database.migrate()
        await database.migrate()
        assert await Migration.count().where(Migration.app_name == "pomogator") == MIGRATION_COUNT
        assert await User.select(User.first_name).output(as_list=True) == ["Kept"]
        for table in TABLES:
            assert await table.count() >= 0, table._meta.tablename
    finally:
        await database.close()


async def test_restart_runs_migrations_again_harmlessly(db_url: str) -> None:
    for _ in range(2):
        async with open_database(db_url, migrate=True):
            assert await Migration.count().where(Migration.app_name == "pomogator") == MIGRATION_COUNT


NEWER_MIGRATION = "2099-01-01T00:00:00:000000"


async def test_a_database_a_newer_version_migrated_is_refused(db_url: str) -> None:
    """A rollback without restoring the dump: `db migrate` said "Nothing to do", and every process ran on tables
    this version does not know."""
    async with open_database(db_url, migrate=True):
        await Migration.insert(Migration(name=NEWER_MIGRATION, app_name="pomogator"))
    try:
        expected = f"has 1 migration this version does not know ({NEWER_MIGRATION}): a newer version of Pomogator"
        # `db migrate`, and a server on SQLite (on PostgreSQL it requires the database migrated: build_services).
        for migrate in (True, None) if db_url.startswith("sqlite") else (True,):
            with pytest.raises(ConfigError, match=re.escape(expected)):
                async with open_database(db_url, migrate=migrate):
                    pass
        async with open_database(db_url, migrate=False) as database:
            assert await database.pending_migrations() == []
            assert NEWER_MIGRATION in await database.applied_migrations()
            with pytest.raises(ConfigError, match=re.escape(expected)):
                await database.migrate()
            with pytest.raises(ConfigError, match=re.escape(expected)):
                await database.require_migrated()
        with pytest.raises(ConfigError, match=re.escape(expected)):  # any process on PostgreSQL, the CLI on SQLite
            async with build_services(make_settings(database_url=db_url), migrate=False):
                pass
    finally:
        async with open_database(db_url, migrate=False):
            await Migration.delete().where(Migration.name == NEWER_MIGRATION)


async def test_quota_index_is_unique(db_url: str) -> None:
    """The quota's conditional upsert needs the unique (telegram_id, model, day) index on both engines."""
    async with open_database(db_url, migrate=True):
        await DailyUsage.insert(DailyUsage(telegram_id=1, model="m", day="2025-01-01", used=1))
        await DailyUsage.insert(DailyUsage(telegram_id=1, model="m", day="2025-01-02", used=1))
        with pytest.raises((sqlite3.IntegrityError, asyncpg.UniqueViolationError)):
            await DailyUsage.insert(DailyUsage(telegram_id=1, model="m", day="2025-01-01", used=1))
        assert await DailyUsage.count() == 2


async def test_a_given_back_token_is_recorded_once(db_url: str) -> None:
    """The quota's give-back records a reservation's token once: the token is the key on both engines."""
    async with open_database(db_url, migrate=True):
        await QuotaGiveBack.insert(QuotaGiveBack(token="a" * 32, day="2025-01-01"))
        with pytest.raises((sqlite3.IntegrityError, asyncpg.UniqueViolationError)):
            await QuotaGiveBack.insert(QuotaGiveBack(token="a" * 32, day="2025-01-02"))
        assert await QuotaGiveBack.select(QuotaGiveBack.day).output(as_list=True) == ["2025-01-01"]


async def test_sqlite_migrates_by_default_postgres_does_not(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    migrate = Database.migrate

    async def counted(self: Database) -> list[str]:
        calls.append(self.url)
        return await migrate(self)

    monkeypatch.setattr(Database, "migrate", counted)
    async with open_database(db_url) as database:
        await database.ping()
    assert len(calls) == (1 if database.is_sqlite else 0)
    async with open_database(db_url, migrate=True):
        pass
    async with open_database(db_url, migrate=False):
        pass
    assert len(calls) == (2 if database.is_sqlite else 1)


async def test_sqlite_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite3"
    async with open_database(f"sqlite:///{path}"):
        pass
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_sqlite_write_transactions_queue_instead_of_failing(tmp_path: Path) -> None:
    """Read-then-write transactions in parallel: deferred ones would fail with "database is locked"."""
    async with open_database(f"sqlite:///{tmp_path / 'tx.sqlite3'}") as database:

        async def add_next(index: int) -> None:
            async with database.transaction():
                count = await User.count()
                await asyncio.sleep(0.01)
                await User.insert(User(telegram_id=1000 + index, first_name=str(count)))

        await asyncio.gather(*(add_next(index) for index in range(5)))
        names = await User.select(User.first_name).output(as_list=True)
        # Each transaction saw every earlier one: they ran one after another.
        assert sorted(names) == ["0", "1", "2", "3", "4"]


async def test_transaction_rolls_back_on_error(db_url: str) -> None:
    async with open_database(db_url, migrate=True) as database:
        with pytest.raises(RuntimeError):
            async with database.transaction():
                await User.insert(User(telegram_id=77, first_name="Gone"))
                raise RuntimeError("abort")
        assert await User.count().where(User.telegram_id == 77) == 0


def test_placeholders_are_numbered_in_order() -> None:
    assert _numbered_placeholders("SELECT {} + {} FROM t WHERE a = {}") == "SELECT $1 + $2 FROM t WHERE a = $3"
    assert _numbered_placeholders("SELECT 1") == "SELECT 1"


async def test_raw_statements_give_what_piccolo_gives_in_and_out_of_transactions(db_url: str) -> None:
    async def rows(sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(row) for row in await raw(User, sql, *args)]

    async with open_database(db_url, migrate=True) as database:
        sql = "INSERT INTO users (telegram_id, first_name) VALUES ({}, {}) RETURNING telegram_id, first_name"
        assert await rows(sql, 5, "Direct") == [{"telegram_id": 5, "first_name": "Direct"}]
        select = "SELECT telegram_id, first_name FROM users WHERE telegram_id IN ({}, {}) ORDER BY 1"
        with pytest.raises(RuntimeError):
            async with database.transaction():
                await raw(User, sql, 6, "Undone")
                # Inside a transaction the statement runs on the transaction's connection: it sees the row.
                assert await rows(select, 5, 6) == await User.raw(select, 5, 6)
                assert len(await raw(User, select, 5, 6)) == 2
                raise RuntimeError("roll back")
        kept = [{"telegram_id": 5, "first_name": "Direct"}]
        assert await rows(select, 5, 6) == await User.raw(select, 5, 6) == kept
        # Rows read by name, as the services read them, whatever the path.
        row = (await raw(User, select, 5, 5))[0]
        assert (row["first_name"], "telegram_id" in row, row.get("missing")) == ("Direct", True, None)


async def test_pending_migrations(db_url: str) -> None:
    database = Database(db_url)
    await database.start(migrate=False)
    try:
        pending = await database.pending_migrations()
        # On PostgreSQL the session's database may be migrated already by an earlier test.
        assert len(pending) in (0, MIGRATION_COUNT)
        await database.migrate()
        assert await database.pending_migrations() == []
        assert await database.migrate() == []
    finally:
        await database.close()


async def test_migrate_returns_the_migrations_it_applied(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'upgraded.sqlite3'}"
    shipped = shipped_migration_ids()
    await migrate_up_to(url, shipped[2])
    async with open_database(url, migrate=False) as database:
        assert await database.pending_migrations() == shipped[3:]
        assert await database.migrate() == shipped[3:]
        assert await database.migrate() == []


RESTART = textwrap.dedent(
    """
    import asyncio, sys

    from pomogator.store.engine import open_database

    async def main(url: str) -> None:
        async with open_database(url):
            pass
        print(" ".join(sorted({name.split(".")[0] for name in sys.modules} & {"black", "blib2to3", "pathspec"})))

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_a_restart_with_nothing_to_migrate_does_not_load_the_migration_machinery(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'restart.sqlite3'}"

    async def start() -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", RESTART, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        return out.decode().strip()

    assert await start() == "black blib2to3 pathspec"  # the first start migrates, with Piccolo's machinery
    assert await start() == ""


INSERT_USER = "INSERT INTO users (telegram_id, first_name) VALUES (?, ?)"


async def test_sqlite_atomic_batch_is_all_or_nothing(tmp_path: Path) -> None:
    async with open_database(f"sqlite:///{tmp_path / 'batch.sqlite3'}") as database:
        engine = database.engine
        assert isinstance(engine, SharedConnectionSQLiteEngine)
        await engine.execute_atomically([(INSERT_USER, (81, "a")), (INSERT_USER, (82, "b"))])
        with pytest.raises(sqlite3.IntegrityError):
            # The second row repeats the first's key: the first must not stay either.
            await engine.execute_atomically([(INSERT_USER, (83, "c")), (INSERT_USER, (81, "again"))])
        rows = await User.select(User.telegram_id, User.first_name).order_by(User.telegram_id)
        assert [(r["telegram_id"], r["first_name"]) for r in rows] == [(81, "a"), (82, "b")]
        # The shared connection is usable afterwards, outside any transaction.
        await User.insert(User(telegram_id=84, first_name="d"))
        with sqlite3.connect(tmp_path / "batch.sqlite3") as other:
            assert other.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 3


async def test_sqlite_commits_lazily_only_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE notes (body TEXT)")
    engine = SharedConnectionSQLiteEngine(path=str(path))  # not started: the file keeps its rollback journal
    await engine.fetch("SELECT 1", [])
    trace: list[str] = []
    engine._connected().set_trace_callback(trace.append)
    await engine.fetch("INSERT INTO notes VALUES (?)", ["lazy asked"], lazy_commit=True)
    await engine.execute_atomically([("INSERT INTO notes VALUES (?)", ["lazy asked too"])], lazy_commit=True)
    assert not [statement for statement in trace if "NORMAL" in statement]
    await engine.close_connection()
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
    await engine.fetch("INSERT INTO notes VALUES (?)", ["lazy in WAL mode"], lazy_commit=True)
    level = await asyncio.get_running_loop().run_in_executor(
        engine._worker, lambda: engine._connected().execute("PRAGMA synchronous").fetchone()
    )
    assert level == {"synchronous": 1}
    assert [row["body"] for row in await engine.fetch("SELECT body FROM notes", [])] == [
        "lazy asked",
        "lazy asked too",
        "lazy in WAL mode",
    ]
    await engine.close_connection()


async def test_sqlite_atomic_batch_waits_for_another_writer(tmp_path: Path) -> None:
    """A write transaction of another process holds SQLite's lock: the batch waits for it instead of failing."""
    path = tmp_path / "busy.sqlite3"
    async with open_database(f"sqlite:///{path}") as database:
        engine = database.engine
        assert isinstance(engine, SharedConnectionSQLiteEngine)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute(INSERT_USER, (91, "other"))
        batch = asyncio.create_task(engine.execute_atomically([(INSERT_USER, (92, "mine"))]))
        await asyncio.sleep(0.2)
        assert not batch.done()
        other.execute("COMMIT")
        other.close()
        await batch
        assert await User.count() == 2


OPENER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path

    import pomogator.store
    from pomogator.store.engine import open_database
    from pomogator.store.tables import User

    async def main(url: str, go: Path, telegram_id: int) -> None:
        print("ready", flush=True)
        deadline = time.monotonic() + 30
        while not go.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        async with open_database(url, migrate=True):
            await User.insert(User(telegram_id=telegram_id, first_name="proc"))

    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])))
    """
)


async def migrate_at_once(url: str, tmp_path: Path) -> None:
    """Three processes (bot, web app, CLI) open a new database at once, each migrating it."""
    go = tmp_path / "go"
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            OPENER,
            url,
            str(go),
            str(index),
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for index in range(3)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert await asyncio.wait_for(process.stdout.readline(), 60) == b"ready\n"
        go.touch()
        results = [await asyncio.wait_for(p.communicate(), 60) for p in processes]
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    for process, (_, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err.decode()
    async with open_database(url):
        assert await Migration.count().where(Migration.app_name == "pomogator") == MIGRATION_COUNT
        assert sorted(await User.select(User.telegram_id).output(as_list=True)) == [0, 1, 2]


async def test_processes_can_migrate_a_fresh_sqlite_file_at_once(tmp_path: Path) -> None:
    """Bot, web app and CLI may start together on a new file: one migrates, the others wait for it."""
    await migrate_at_once(f"sqlite:///{tmp_path / 'fresh.sqlite3'}", tmp_path)


@pytest.mark.skipif(not POSTGRES_URL, reason="POMOGATOR_TEST_POSTGRES_URL is not set")
async def test_processes_can_migrate_a_fresh_postgres_database_at_once(tmp_path: Path) -> None:
    """`db migrate` from a deploy job beside compose's migrate service, or on two hosts: one migrates, the others
    wait for it and find nothing left (without the lock, one failed with "relation already exists")."""
    assert POSTGRES_URL is not None
    async with throwaway_postgres(POSTGRES_URL, "pomogator_migrate", migrate=False) as url:
        await migrate_at_once(url, tmp_path)
