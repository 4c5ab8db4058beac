"""The CLI as a person runs it: real processes, an empty working folder, SQLite or PostgreSQL."""

from __future__ import annotations

import asyncio
import gc
import json
import sqlite3
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

import pytest
from piccolo.apps.migrations.tables import Migration

from pomogator.servers import YOUNG_GENERATION_THRESHOLD, freeze_start_up_objects
from pomogator.store.engine import open_database, shipped_migrations
from tests.cli.helpers import clean_env, run_cli
from tests.conftest import TEST_API_KEY
from tests.fakes.openai_server import FakeLLM, Reply
from tests.store.support import migrate_up_to


async def migrated(db_url: str) -> str:
    """``db_url`` with its database made and migrated, as `pomogator db migrate` leaves it."""
    async with open_database(db_url, migrate=True):
        return db_url


@pytest.fixture
async def env(db_url: str) -> dict[str, str]:
    return clean_env(POMOGATOR_DATABASE_URL=await migrated(db_url))


async def test_help_lists_commands(tmp_path: Path) -> None:
    result = await run_cli("--help", cwd=tmp_path, env=clean_env())
    assert result.code == 0
    for command in ("db", "user", "models", "chat", "run"):
        assert command in result.stdout


async def test_version_is_the_installed_packages(tmp_path: Path) -> None:
    result = await run_cli("--version", cwd=tmp_path, env=clean_env())
    assert (result.code, result.stdout, result.stderr) == (0, f"pomogator {version('pomogator')}\n", "")


async def test_migrate_is_idempotent(tmp_path: Path, env: dict[str, str]) -> None:
    first = await run_cli("db", "migrate", cwd=tmp_path, env=env)
    second = await run_cli("db", "migrate", cwd=tmp_path, env=env)
    assert first.code == 0, first.stderr
    assert second.code == 0, second.stderr
    assert "Nothing to do: all " in second.stderr
    assert second.stdout == ""


@pytest.mark.parametrize("empty", ["", " "])
async def test_an_empty_database_url_means_the_default_also_to_the_first_migration(tmp_path: Path, empty: str) -> None:
    """Piccolo's config module, imported to migrate, reads the URL as the settings do."""
    result = await run_cli("db", "migrate", cwd=tmp_path, env=clean_env(POMOGATOR_DATABASE_URL=empty))
    assert result.code == 0, result.stderr
    assert f"{len(shipped_migrations())} applied now" in result.stderr
    assert (tmp_path / "pomogator.sqlite3").is_file()


async def test_migrate_says_what_it_applied_on_a_new_and_on_an_older_database(tmp_path: Path) -> None:
    shipped = shipped_migrations()
    names = list(shipped.values())
    new = await run_cli("db", "migrate", cwd=tmp_path, env=clean_env(POMOGATOR_DATABASE_URL="sqlite:///new.db"))
    assert new.code == 0, new.stderr
    assert new.stderr.strip() == f"0 migrations applied before, {len(names)} applied now: {', '.join(names)}."

    older = f"sqlite:///{tmp_path / 'older.db'}"
    await migrate_up_to(older, list(shipped)[2])
    upgraded = await run_cli("db", "migrate", cwd=tmp_path, env=clean_env(POMOGATOR_DATABASE_URL=older))
    assert upgraded.code == 0, upgraded.stderr
    assert upgraded.stderr.strip() == (
        f"3 migrations applied before, {len(names) - 3} applied now: {', '.join(names[3:])}."
    )
    again = await run_cli("db", "migrate", cwd=tmp_path, env=clean_env(POMOGATOR_DATABASE_URL=older))
    assert again.stderr.strip() == f"Nothing to do: all {len(names)} migrations of this version are applied."


async def test_admin_commands_do_not_make_a_database_that_is_not_there(tmp_path: Path) -> None:
    env = clean_env(POMOGATOR_DATABASE_URL=f"sqlite:///{tmp_path / 'nowhere' / 'pomogator.sqlite3'}")
    for args in (("user", "grant-premium", "5", "--days", "30"), ("user", "show", "5"), ("db", "status")):
        result = await run_cli(*args, cwd=tmp_path, env=env)
        assert result.code == 1, args
        assert "No database at" in result.stderr and "pomogator db migrate" in result.stderr
    assert not (tmp_path / "nowhere").exists()


async def test_a_users_chat_does_not_make_a_database_that_is_not_there(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """It made one, and `user grant-premium` then "succeeded" on it; the local session may still start on a new
    file (a first try of a new checkout)."""
    env = clean_env(POMOGATOR_OPENROUTER_API_KEY=TEST_API_KEY, POMOGATOR_OPENROUTER_BASE_URL=fake_llm.base_url)
    as_user = await run_cli("chat", "--user", "123", cwd=tmp_path, env=env, stdin="hi\n")
    assert as_user.code == 1
    assert as_user.stderr.startswith("Error: No database at pomogator.sqlite3")
    assert "pomogator db migrate" in as_user.stderr
    assert not (tmp_path / "pomogator.sqlite3").exists() and fake_llm.request_count == 0
    local = await run_cli("chat", cwd=tmp_path, env=env, stdin="hi\n")
    assert local.code == 0, local.stderr
    assert (tmp_path / "pomogator.sqlite3").exists()


# Commands that read or change what is stored: none of them migrates an SQLite file (only the servers and the chat do).
ADMIN_COMMANDS = (
    ("user", "list"),
    ("user", "show", "5"),
    ("user", "grant-premium", "5", "--days", "30"),
    ("user", "delete", "5", "--yes"),
    ("usage",),
    ("logs", "tail"),
    ("payments", "list"),
)


async def test_admin_commands_do_not_migrate_a_file_that_is_not_pomogators(tmp_path: Path) -> None:
    """`user list` on another program's SQLite file added Pomogator's tables to it, and reported an empty list."""
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE foo (x INTEGER)")
    env = clean_env(POMOGATOR_DATABASE_URL=f"sqlite:///{other}")
    for args in ADMIN_COMMANDS:
        result = await run_cli(*args, cwd=tmp_path, env=env)
        assert result.code == 1, (args, result.stderr)
        assert result.stderr.strip() == (
            f"Error: The database {other} has no Pomogator tables (a new database, or not Pomogator's: check "
            "POMOGATOR_DATABASE_URL): run `pomogator db migrate` to set it up."
        ), args
        assert result.stdout == "", args
    with sqlite3.connect(other) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert tables == ["foo"]
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


async def test_admin_commands_do_not_migrate_an_sqlite_file_left_by_an_older_version(tmp_path: Path) -> None:
    """After an upgrade, `user list` migrated the production file unasked, with no backup taken."""
    path = tmp_path / "pomogator.sqlite3"
    url = f"sqlite:///{path}"
    shipped = list(shipped_migrations())
    await migrate_up_to(url, shipped[-2])
    env = clean_env(POMOGATOR_DATABASE_URL=url)
    for args in ADMIN_COMMANDS:
        result = await run_cli(*args, cwd=tmp_path, env=env)
        assert result.code == 1, (args, result.stderr)
        assert result.stderr.strip() == (
            f"Error: The database {path} lacks 1 migration of this version: run `pomogator db migrate` first."
        ), args
    status = await run_cli("db", "status", cwd=tmp_path, env=env)
    assert status.code == 1 and f"{shipped_migrations()[shipped[-1]]}\tpending" in status.stdout
    assert (await run_cli("db", "migrate", cwd=tmp_path, env=env)).code == 0
    listed = await run_cli("user", "list", cwd=tmp_path, env=env)
    assert listed.code == 0, listed.stderr


def test_db_status_lists_the_migrations_and_fails_while_some_are_pending(tmp_path: Path) -> None:
    asyncio.run(_db_status(tmp_path))


async def _db_status(tmp_path: Path) -> None:
    database = tmp_path / "pomogator.sqlite3"
    database.touch()  # a file nothing was applied to
    env = clean_env(POMOGATOR_DATABASE_URL=f"sqlite:///{database}")
    pending = await run_cli("db", "status", cwd=tmp_path, env=env)
    assert pending.code == 1
    assert "pomogator_0001_initial\tpending" in pending.stdout
    assert "not applied: run `pomogator db migrate`" in pending.stderr
    assert (await run_cli("db", "migrate", cwd=tmp_path, env=env)).code == 0
    applied = await run_cli("db", "status", cwd=tmp_path, env=env)
    assert applied.code == 0, applied.stderr
    assert "pending" not in applied.stdout and "pomogator_0006_open_refund\tapplied" in applied.stdout


async def test_a_database_a_newer_version_migrated_is_listed_and_refused(tmp_path: Path) -> None:
    """After a rollback without restoring the dump, `db status` listed every migration as applied and exited 0,
    `db migrate` had "Nothing to do", and the other commands and the servers ran."""
    url = f"sqlite:///{tmp_path / 'pomogator.sqlite3'}"
    async with open_database(url, migrate=True):
        await Migration.insert(Migration(name="2099-01-01T00:00:00:000000", app_name="pomogator"))
    env = clean_env(POMOGATOR_DATABASE_URL=url)
    status = await run_cli("db", "status", cwd=tmp_path, env=env)
    assert status.code == 1
    assert status.stdout.splitlines()[-1] == "2099-01-01T00:00:00:000000\tunknown to this version"
    assert "\tpending" not in status.stdout
    assert status.stderr.strip() == (
        "Error: 1 applied by a newer version of Pomogator: run that version, or restore the dump taken before it was "
        "installed."
    )
    refusal = (
        "has 1 migration this version does not know (2099-01-01T00:00:00:000000): a newer version of Pomogator "
        "migrated it. Run that version, or restore the dump taken before it was installed."
    )
    for args in (("db", "migrate"), ("user", "list"), ("run", "web")):
        result = await run_cli(*args, cwd=tmp_path, env=env)
        assert result.code == 1, args
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
        # The web app's start-up logs its failure before it (uvicorn's "Application startup failed").
        assert len(errors) == 1 and errors[0].endswith(refusal), result.stderr


async def test_user_lifecycle(tmp_path: Path, env: dict[str, str]) -> None:
    missing = await run_cli("user", "show", "777", "--json", cwd=tmp_path, env=env)
    assert missing.code == 1
    assert missing.stdout == ""
    assert "777" in missing.stderr
    assert "Traceback" not in missing.stderr

    granted = await run_cli("user", "grant-premium", "777", "--days", "30", cwd=tmp_path, env=env)
    assert granted.code == 0, granted.stderr
    shown = await run_cli("user", "show", "777", "--json", cwd=tmp_path, env=env)
    assert shown.code == 0, shown.stderr
    data = json.loads(shown.stdout)  # exactly one JSON object, nothing else
    assert data["telegram_id"] == 777
    assert data["model"] == "openai/gpt-4o-mini"
    assert data["role"] is None
    assert data["premium"] is True
    until = datetime.fromisoformat(data["premium_until"])
    offset = until.utcoffset()
    assert offset is not None
    assert offset.total_seconds() == 3 * 3600  # shown in Europe/Moscow
    assert data["requests_today"] == 0
    # For reading (piped: tab-separated lines): yes / no and the time as the other commands show it.
    table = (await run_cli("user", "show", "777", cwd=tmp_path, env=env)).stdout.splitlines()
    assert "premium\tyes" in table and f"premium_until\t{until:%Y-%m-%d %H:%M} MSK" in table

    listed = await run_cli("user", "list", cwd=tmp_path, env=env)
    assert listed.code == 0
    assert "777" in listed.stdout

    revoked = await run_cli("user", "revoke-premium", "777", cwd=tmp_path, env=env)
    assert revoked.code == 0
    data = json.loads((await run_cli("user", "show", "777", "--json", cwd=tmp_path, env=env)).stdout)
    assert data["premium"] is False
    assert data["premium_until"] is None
    table = (await run_cli("user", "show", "777", cwd=tmp_path, env=env)).stdout.splitlines()
    assert "premium\tno" in table and "premium_until\t—" in table

    deleted = await run_cli("user", "delete", "777", "--yes", cwd=tmp_path, env=env)
    assert deleted.code == 0
    assert (await run_cli("user", "show", "777", cwd=tmp_path, env=env)).code == 1
    assert (await run_cli("user", "delete", "777", "--yes", cwd=tmp_path, env=env)).code == 1


async def test_models_list_piped_is_full_lines(tmp_path: Path) -> None:
    result = await run_cli("models", "list", cwd=tmp_path, env=clean_env())
    assert result.code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split("\t")[0] == "id"
    assert any(line.startswith("meta-llama/llama-3.3-70b-instruct\t") for line in lines)
    assert any("premium only" in line for line in lines)


async def test_bad_models_file_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "models.toml"
    bad.write_text(
        'default = "nope"\n[[models]]\nid = "a"\nfree_daily = 1\npremium_daily = 2\ncontext_length = 100\n'
        "max_output_tokens = 10\n"
    )
    result = await run_cli("models", "list", cwd=tmp_path, env=clean_env(POMOGATOR_MODELS_FILE=str(bad)))
    assert result.code == 1
    assert "nope" in result.stderr
    assert "Traceback" not in result.stderr


async def test_missing_key_names_the_variable(tmp_path: Path) -> None:
    result = await run_cli("chat", cwd=tmp_path, env=clean_env(), stdin="hi\n")
    assert result.code == 1
    assert "POMOGATOR_OPENROUTER_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr


async def test_bad_admin_ids_name_the_variable_for_every_command(tmp_path: Path) -> None:
    token = "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghi"
    for args, extra in [
        (("user", "list"), {}),
        (("user", "list"), {"POMOGATOR_BOT_TOKEN": token}),
        (("run", "web"), {"POMOGATOR_BOT_TOKEN": token}),
    ]:
        result = await run_cli(*args, cwd=tmp_path, env=clean_env(POMOGATOR_ADMIN_IDS="12, @admin", **extra))
        assert result.code == 1, (args, result.stderr)
        assert "POMOGATOR_ADMIN_IDS: '@admin' is not a Telegram id" in result.stderr, args
        assert "Traceback" not in result.stderr


async def test_piped_chat_in_an_empty_folder(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """`printf 'hi\\n' | pomogator chat` works with nothing but an API key: SQLite is created and migrated."""
    fake_llm.enqueue(Reply(text="Hello **there**"), Reply(text="Second answer"))
    env = clean_env(POMOGATOR_OPENROUTER_API_KEY=TEST_API_KEY, POMOGATOR_OPENROUTER_BASE_URL=fake_llm.base_url)
    result = await run_cli("chat", cwd=tmp_path, env=env, stdin="hi\n\n/clear\nhow are you\n")
    assert result.code == 0, result.stderr
    assert result.stdout == "Hello **there**\nSecond answer\n"
    assert (tmp_path / "pomogator.sqlite3").exists()
    assert fake_llm.request_count == 2
    # /clear emptied the local context: the second request carries only the new message.
    assert [m["role"] for m in fake_llm.requests[1].messages] == ["user"]
    assert fake_llm.requests[0].model == "openai/gpt-4o-mini"


async def test_piped_chat_says_when_an_answer_was_cut_off(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(
        Reply(text="The first half", finish_reason="length"),
        Reply(text="Whole"),
        Reply(text="Filtered from here", finish_reason="content_filter"),
    )
    env = clean_env(POMOGATOR_OPENROUTER_API_KEY=TEST_API_KEY, POMOGATOR_OPENROUTER_BASE_URL=fake_llm.base_url)
    result = await run_cli("chat", cwd=tmp_path, env=env, stdin="long one\nshort one\nrisky one\n")
    assert result.code == 0, result.stderr
    assert result.stdout == "The first half\nWhole\nFiltered from here\n"
    assert result.stderr.count("cut off at the model's length limit") == 1
    assert result.stderr.count("content filter stopped the answer part-way") == 1


async def test_chat_unknown_model_lists_valid_ids(tmp_path: Path) -> None:
    """A bad value of an option, with the exit code of every other (2), before the database is opened."""
    env = clean_env(POMOGATOR_OPENROUTER_API_KEY=TEST_API_KEY)
    result = await run_cli("chat", "--model", "nope/none", cwd=tmp_path, env=env, stdin="hi\n")
    assert result.code == 2
    assert "Invalid value for --model: Unknown model 'nope/none'." in result.stderr
    assert "openai/gpt-4o-mini" in result.stderr
    assert not (tmp_path / "pomogator.sqlite3").exists()


async def test_chat_as_user_uses_role_context_and_quota(tmp_path: Path, db_url: str, fake_llm: FakeLLM) -> None:
    env = clean_env(
        POMOGATOR_DATABASE_URL=await migrated(db_url),
        POMOGATOR_OPENROUTER_API_KEY=TEST_API_KEY,
        POMOGATOR_OPENROUTER_BASE_URL=fake_llm.base_url,
        POMOGATOR_MODELS_FILE=str(_tiny_catalog(tmp_path)),
    )
    assert (await run_cli("user", "grant-premium", "5", "--days", "1", cwd=tmp_path, env=env)).code == 0
    result = await run_cli("chat", "--user", "5", cwd=tmp_path, env=env, stdin="one\ntwo\nthree\n")
    assert result.code == 1, result.stderr  # piped: a refused message fails the script
    # The premium limit of the tiny catalog is 2: the third line is refused without an LLM call.
    assert fake_llm.request_count == 2
    assert "limit" in result.stderr.lower()
    assert [m["role"] for m in fake_llm.requests[1].messages] == ["user", "assistant", "user"]
    data = json.loads((await run_cli("user", "show", "5", "--json", cwd=tmp_path, env=env)).stdout)
    assert data["requests_today"] == 2

    unknown = await run_cli("chat", "--user", "999", cwd=tmp_path, env=env, stdin="hi\n")
    assert unknown.code == 1
    assert "999" in unknown.stderr


def _tiny_catalog(folder: Path) -> Path:
    path = folder / "tiny.toml"
    path.write_text(
        'default = "tiny/model"\n[[models]]\nid = "tiny/model"\ntitle = "Tiny"\nfree_daily = 1\n'
        "premium_daily = 2\nvision = false\ncontext_length = 8000\nmax_output_tokens = 500\n"
    )
    return path


async def test_chat_as_free_user_cannot_use_a_premium_model(tmp_path: Path, db_url: str, fake_llm: FakeLLM) -> None:
    env = clean_env(
        POMOGATOR_DATABASE_URL=await migrated(db_url),
        POMOGATOR_OPENROUTER_API_KEY=TEST_API_KEY,
        POMOGATOR_OPENROUTER_BASE_URL=fake_llm.base_url,
    )
    assert (await run_cli("user", "grant-premium", "6", "--days", "1", cwd=tmp_path, env=env)).code == 0
    assert (await run_cli("user", "revoke-premium", "6", cwd=tmp_path, env=env)).code == 0
    result = await run_cli("chat", "--user", "6", "--model", "openai/gpt-5", cwd=tmp_path, env=env, stdin="hi\n")
    assert result.code == 1  # refused before the session starts
    assert "premium" in result.stderr.lower()
    assert fake_llm.request_count == 0
    shown = json.loads((await run_cli("user", "show", "6", "--json", cwd=tmp_path, env=env)).stdout)
    assert shown["model"] == "openai/gpt-4o-mini"  # --model is for the session only


def test_servers_freeze_what_start_up_made_and_collect_less_often() -> None:
    threshold = gc.get_threshold()
    try:
        freeze_start_up_objects()
        assert gc.get_freeze_count() > 10_000  # the imported modules, at least
        assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, *threshold[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
