"""Ordinary failures as a person meets them: one line on stderr, a non-zero exit code, no traceback, no password."""

from __future__ import annotations

import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cli.helpers import Result, clean_env, run_cli
from tests.conftest import POSTGRES_URL
from tests.databases import database_at, throwaway_postgres

PASSWORD = "pwSECRET42"
ERROR_FILE = re.compile(r"the traceback is in (\S+\.txt)")


def env_in(folder: Path, **values: str) -> dict[str, str]:
    """``clean_env`` keeping temporary files (an unexpected failure's traceback) in the test's folder."""
    return clean_env(TMPDIR=str(folder), **values)


def assert_one_line(result: Result, *, code: int = 1) -> str:
    """The failure's only line, checked to carry no traceback and no password."""
    assert result.code == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "SECRET" not in result.stderr + result.stdout
    return lines[0]


# --- the database ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:abSECRETPW#x@127.0.0.1:5432/postgres",
        "postgresql://postgres:ab/cdSECRETPW@127.0.0.1:5432/postgres",
    ],
)
async def test_a_database_url_with_an_unencoded_password_is_refused_without_it(tmp_path: Path, url: str) -> None:
    result = await run_cli("user", "show", "1", cwd=tmp_path, env=env_in(tmp_path, POMOGATOR_DATABASE_URL=url))
    line = assert_one_line(result)
    assert "POMOGATOR_DATABASE_URL" in line and "percent-encode" in line


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"postgresql://pomogator:{PASSWORD}@127.0.0.1:1/pomogator", "127.0.0.1:1/pomogator: Connect call failed"),
        (f"postgresql://pomogator:{PASSWORD}@no-such-host.invalid/pomogator", "no-such-host.invalid/pomogator"),
        ("sqlite:///folder", "database folder: unable to open database file"),
        ("sqlite:///not-a-database.sqlite3", "database not-a-database.sqlite3: file is not a database"),
    ],
)
async def test_a_database_that_cannot_be_used_is_named_in_one_line(tmp_path: Path, url: str, expected: str) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "not-a-database.sqlite3").write_text("some text")
    result = await run_cli("user", "show", "1", cwd=tmp_path, env=env_in(tmp_path, POMOGATOR_DATABASE_URL=url))
    line = assert_one_line(result)
    assert line.startswith("Error: Cannot use the database ")
    assert expected in line


async def test_the_bot_says_in_one_line_that_its_database_is_unreachable(tmp_path: Path) -> None:
    env = env_in(
        tmp_path,
        POMOGATOR_DATABASE_URL=f"postgresql://pomogator:{PASSWORD}@127.0.0.1:1/pomogator",
        POMOGATOR_BOT_TOKEN="123:abc",
        POMOGATOR_OPENROUTER_API_KEY="sk-test",
    )
    line = assert_one_line(await run_cli("run", "bot", cwd=tmp_path, env=env))
    assert "Cannot use the database 127.0.0.1:1/pomogator" in line


async def test_the_web_app_says_in_one_line_that_its_database_is_unreachable(tmp_path: Path) -> None:
    env = env_in(
        tmp_path,
        POMOGATOR_DATABASE_URL=f"postgresql://pomogator:{PASSWORD}@127.0.0.1:1/pomogator",
        POMOGATOR_BOT_TOKEN="123:abc",
        POMOGATOR_YOOKASSA_SHOP_ID="123",
        POMOGATOR_YOOKASSA_SECRET_KEY="test_secret",
        POMOGATOR_WEB_PORT="0",
    )
    result = await run_cli("run", "web", cwd=tmp_path, env=env)
    # As every command and `run bot` report it: one "Error:" line and exit code 1 (uvicorn's own is 3).
    assert result.code == 1
    assert "Traceback" not in result.stderr and "SECRET" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [line for line in errors if "Cannot use the database 127.0.0.1:1/pomogator" in line] != []


@pytest.fixture
async def empty_postgres() -> AsyncIterator[str]:
    """A PostgreSQL database nobody migrated, dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip("POMOGATOR_TEST_POSTGRES_URL is not set")
    async with throwaway_postgres(POSTGRES_URL, "pomogator_empty", migrate=False) as url:
        yield url


async def test_a_missing_database_and_one_not_migrated_are_one_line(tmp_path: Path, empty_postgres: str) -> None:
    missing = database_at(empty_postgres, "pomogator_no_such_database")
    line = assert_one_line(
        await run_cli("user", "show", "1", cwd=tmp_path, env=env_in(tmp_path, POMOGATOR_DATABASE_URL=missing))
    )
    assert 'database "pomogator_no_such_database" does not exist' in line

    env = env_in(tmp_path, POMOGATOR_DATABASE_URL=empty_postgres)
    line = assert_one_line(await run_cli("user", "show", "1", cwd=tmp_path, env=env))
    assert "pomogator db migrate" in line


# --- settings and input ------------------------------------------------------------------------------------


async def test_a_malformed_bot_token_is_one_line(tmp_path: Path) -> None:
    env = env_in(tmp_path, POMOGATOR_BOT_TOKEN="bad-SECRET", POMOGATOR_OPENROUTER_API_KEY="sk-test")
    line = assert_one_line(await run_cli("run", "bot", cwd=tmp_path, env=env))
    assert "POMOGATOR_BOT_TOKEN" in line and "not a bot token" in line


@pytest.mark.parametrize(
    "args",
    [
        ("user", "show", "99999999999999999999999"),
        ("user", "show", "0"),
        ("user", "delete", "9223372036854775808", "--yes"),
        ("user", "grant-premium", "5", "--days", "99999999"),
        ("user", "list", "--limit", "-5"),
        ("logs", "prune", "--older-than", "999999999w"),
        ("logs", "tail", "--user", "99999999999999999999"),
        ("logs", "tail", "--limit", "99999999999999999999"),
        ("payments", "list", "--user", "99999999999999999999"),
        ("chat", "--user", "99999999999999999999"),
    ],
)
async def test_numbers_out_of_range_are_bad_input(tmp_path: Path, args: tuple[str, ...]) -> None:
    env = env_in(tmp_path, POMOGATOR_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    result = await run_cli(*args, cwd=tmp_path, env=env)
    assert result.code == 2, result.stderr
    assert "Invalid value" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "db.sqlite3").exists()  # refused before anything was opened


async def test_an_error_quoting_input_shows_it_as_typed(tmp_path: Path) -> None:
    """Square brackets in a message are text, not rich markup (which failed on "[/x]" with a traceback)."""
    env = env_in(tmp_path, POMOGATOR_OPENROUTER_API_KEY="sk-test")
    result = await run_cli("chat", "--model", "nope[/x] [bold]", cwd=tmp_path, env=env, stdin="hi\n")
    assert result.code == 2, result.stderr  # a bad value of an option
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: Invalid value for --model: Unknown model 'nope[/x] [bold]'. Valid ids: ")


async def test_the_largest_telegram_id_is_accepted(tmp_path: Path) -> None:
    env = env_in(tmp_path, POMOGATOR_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert (await run_cli("db", "migrate", cwd=tmp_path, env=env)).code == 0
    line = assert_one_line(await run_cli("user", "show", "9223372036854775807", cwd=tmp_path, env=env))
    assert line == "Error: User 9223372036854775807 not found."


# --- bugs --------------------------------------------------------------------------------------------------

# `pomogator models list` with a bug in the catalog loader: the exception quotes the configured database password.
BUGGY_COMMAND = """
import sys
import pomogator.llm.catalog

def load_catalog(path):
    raise KeyError("no key in postgresql://app:pa%2Fss@x/app or pa/ss")

pomogator.llm.catalog.load_catalog = load_catalog
sys.argv = ["pomogator", "models", "list"]
from pomogator.console import main
main()
"""


async def test_a_bug_is_one_line_naming_the_file_with_its_redacted_traceback(tmp_path: Path) -> None:
    env = env_in(tmp_path, POMOGATOR_DATABASE_URL="postgresql://app:pa%2Fss@db/app")
    result = await run_cli("-c", BUGGY_COMMAND, cwd=tmp_path, env=env, program=sys.executable)
    line = assert_one_line(result)
    assert line.startswith("Error: unexpected failure (KeyError); the traceback is in ")
    assert "POMOGATOR_DEBUG=1" in line
    details, mode, text = written_details(line)
    assert details.parent == tmp_path
    assert mode & 0o077 == 0  # only its owner reads it
    assert "Traceback (most recent call last)" in text and "in load_catalog" in text
    assert "KeyError: 'no key in postgresql://app:***@x/app or ***'" in text
    assert "pa/ss" not in text and "pa%2Fss" not in text


def written_details(line: str) -> tuple[Path, int, str]:
    """The file an error line names, its permission bits and its text."""
    found = ERROR_FILE.search(line)
    assert found is not None, line
    path = Path(found.group(1))
    return path, path.stat().st_mode, path.read_text()


def error_files(folder: Path) -> list[Path]:
    return list(folder.glob("pomogator-error-*"))


async def test_with_debug_a_bug_prints_its_redacted_traceback(tmp_path: Path) -> None:
    env = env_in(tmp_path, POMOGATOR_DATABASE_URL="postgresql://app:pa%2Fss@db/app", POMOGATOR_DEBUG="1")
    result = await run_cli("-c", BUGGY_COMMAND, cwd=tmp_path, env=env, program=sys.executable)
    assert result.code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "pa/ss" not in result.stderr and "pa%2Fss" not in result.stderr
    assert result.stderr.rstrip().endswith("Error: unexpected failure (KeyError); see the traceback above.")
    assert not error_files(tmp_path)


async def test_debug_is_read_from_env_file_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("POMOGATOR_DEBUG=1\n", encoding="utf-8")
    env = env_in(tmp_path, POMOGATOR_DATABASE_URL="postgresql://app:pa%2Fss@db/app")
    result = await run_cli("-c", BUGGY_COMMAND, cwd=tmp_path, env=env, program=sys.executable)
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("see the traceback above.")


# --- the servers ------------------------------------------------------------------------------------------


async def test_the_web_app_on_a_port_in_use_says_so_in_one_line_before_starting(tmp_path: Path) -> None:
    """The address is bound before the app's start-up runs (its jobs, the Bot API calls): a port in use is one
    ``Error:`` line and exit code 1, not uvicorn's error log after a full start-up and its exit code 3."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = env_in(tmp_path, POMOGATOR_WEB_HOST="127.0.0.1", POMOGATOR_WEB_PORT=str(port))
        line = assert_one_line(await run_cli("run", "web", cwd=tmp_path, env=env))
    assert line == f"Error: cannot listen on 127.0.0.1:{port}: address already in use"
    # Nothing of the app ran: its start-up migrates the default SQLite file first.
    assert not (tmp_path / "pomogator.sqlite3").exists()


async def test_the_bot_without_its_tokens_says_so_before_loading_aiogram(tmp_path: Path) -> None:
    """Loading aiogram takes seconds of a cold start: the missing settings are reported before it."""
    script = (
        "import sys\n"
        "from pomogator.errors import ConfigError\n"
        "from pomogator.servers import run_bot\n"
        "try:\n"
        "    run_bot()\n"
        "except ConfigError as exc:\n"
        "    print(exc, 'aiogram' in sys.modules)\n"
    )
    result = await run_cli("-c", script, cwd=tmp_path, env=env_in(tmp_path), program=sys.executable)
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "POMOGATOR_BOT_TOKEN and POMOGATOR_OPENROUTER_API_KEY are not set. False"


# --- the settings -----------------------------------------------------------------------------------------


async def test_a_misspelt_setting_is_warned_about_once_without_its_value(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("POMOGATOR_ADMIN_ID=42\n", encoding="utf-8")
    env = env_in(tmp_path, POMOGATOR_DATABASE_URI="postgresql://u:SECRETpw@db/x", POMOGATOR_DEBUG="0")
    result = await run_cli("models", "list", cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].endswith("POMOGATOR_ADMIN_ID is not a setting and is ignored; did you mean POMOGATOR_ADMIN_IDS?")
    assert lines[1].endswith(
        "POMOGATOR_DATABASE_URI is not a setting and is ignored; did you mean POMOGATOR_DATABASE_URL?"
    )
    assert all("| WARNING  |" in line for line in lines)
    # The values are never shown (they may be secrets).
    assert "SECRET" not in result.stderr
    assert not any("42" in line.split(" - ", 1)[1] for line in lines)


async def test_a_line_of_env_that_cannot_be_read_is_named_once_without_its_text(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text('POMOGATOR_BOT_TOKEN="123:SECRET\nPOMOGATOR_LOG_JSON=false\nSECRET pw\n', "utf-8")
    result = await run_cli("models", "list", cwd=tmp_path, env=env_in(tmp_path, POMOGATOR_DEBUG="0"))
    assert result.code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [line.split(" - ", 1)[1] for line in lines] == [
        ".env, line 1: not NAME=value (a missing = or an unclosed quote), skipped",
        ".env, line 3: not NAME=value (a missing = or an unclosed quote), skipped",
    ]
    assert all("| WARNING  |" in line for line in lines) and "SECRET" not in result.stderr
