"""``pomogator logs tail`` and ``pomogator logs prune``, run as the real console script."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import timedelta
from pathlib import Path

import pytest

from pomogator.commands.logs import parse_age
from pomogator.store.engine import open_database
from pomogator.store.tables import LogRecord
from pomogator.timeutil import utcnow
from tests.cli.helpers import POMOGATOR, clean_env, run_cli


async def seed(url: str) -> None:
    now = utcnow()
    rows = [
        ("INFO", None, "service started", timedelta(days=40)),
        ("ERROR", 42, "chat failed for 42", timedelta(days=31)),
        ("INFO", 42, "user 42 asked", timedelta(hours=13)),
        ("WARNING", 7, "user 7 flooded", timedelta(hours=2)),
        ("ERROR", 7, "chat failed for 7", timedelta(minutes=5)),
    ]
    async with open_database(url, migrate=True) as database, database.transaction():
        await LogRecord.insert(
            *(
                LogRecord(
                    created_at=now - age,
                    level=level,
                    logger="pomogator.bot",
                    message=message,
                    process="bot",
                    telegram_id=user,
                    context=json.dumps({"user_id": user} if user else {}),
                    exception="Traceback (most recent call last):\nRuntimeError: boom" if level == "ERROR" else None,
                )
                for level, user, message, age in rows
            )
        )


@pytest.fixture
async def env(db_url: str) -> dict[str, str]:
    await seed(db_url)
    return clean_env(POMOGATOR_DATABASE_URL=db_url)


def table(stdout: str) -> list[list[str]]:
    """Piped, the table is tab-separated lines under a header."""
    header, *lines = stdout.splitlines()
    assert header.split("\t") == ["id", "time (MSK)", "level", "process", "user", "logger", "message"]
    return [line.split("\t") for line in lines]


async def test_tail_shows_the_newest_records_oldest_first(tmp_path: Path, env: dict[str, str]) -> None:
    result = await run_cli("logs", "tail", "--limit", "3", cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    rows = table(result.stdout)
    assert [row[6] for row in rows] == [
        "user 42 asked",
        "user 7 flooded",
        "chat failed for 7 | RuntimeError: boom",
    ]
    assert [row[2] for row in rows] == ["INFO", "WARNING", "ERROR"]
    assert rows[0][3:6] == ["bot", "42", "pomogator.bot"]


async def test_tail_filters_by_level_and_user(tmp_path: Path, env: dict[str, str]) -> None:
    result = await run_cli("logs", "tail", "--level", "warning", cwd=tmp_path, env=env)
    assert [row[6].split(" | ")[0] for row in table(result.stdout)] == [
        "chat failed for 42",
        "user 7 flooded",
        "chat failed for 7",
    ]
    result = await run_cli("logs", "tail", "--user", "42", cwd=tmp_path, env=env)
    assert [row[4] for row in table(result.stdout)] == ["42", "42"]
    result = await run_cli("logs", "tail", "--level", "error", "--user", "7", cwd=tmp_path, env=env)
    assert [row[6] for row in table(result.stdout)] == ["chat failed for 7 | RuntimeError: boom"]


async def test_tail_json_keeps_stdout_pure_json_while_logging_to_stderr(tmp_path: Path, env: dict[str, str]) -> None:
    debug_env = {**env, "POMOGATOR_LOG_LEVEL": "DEBUG"}
    result = await run_cli("logs", "tail", "--json", cwd=tmp_path, env=debug_env)
    assert result.code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [record["message"] for record in records][-1] == "chat failed for 7"
    assert records[-1]["telegram_id"] == 7
    assert records[-1]["context"] == {"user_id": 7}
    # Library debug records went to stderr, not into the JSON.
    assert "DEBUG" in result.stderr


async def test_unknown_level_is_a_usage_error(tmp_path: Path, env: dict[str, str]) -> None:
    result = await run_cli("logs", "tail", "--level", "loud", cwd=tmp_path, env=env)
    assert result.code == 2
    assert "unknown level 'loud'" in result.stderr
    assert result.stdout == ""


async def test_prune_deletes_only_older_records(tmp_path: Path, env: dict[str, str]) -> None:
    result = await run_cli("logs", "prune", "--older-than", "30d", cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    assert "Deleted 2 log records older than 30d." in result.stderr
    result = await run_cli("logs", "prune", "--older-than", "12h", cwd=tmp_path, env=env)
    assert "Deleted 1 log records older than 12h." in result.stderr
    result = await run_cli("logs", "tail", cwd=tmp_path, env=env)
    assert [row[6].split(" | ")[0] for row in table(result.stdout)] == ["user 7 flooded", "chat failed for 7"]
    result = await run_cli("logs", "prune", "--older-than", "2w", cwd=tmp_path, env=env)
    assert "Deleted 0 log records" in result.stderr


async def test_prune_needs_a_valid_age(tmp_path: Path, env: dict[str, str]) -> None:
    result = await run_cli("logs", "prune", "--older-than", "soon", cwd=tmp_path, env=env)
    assert result.code == 2
    assert "not an age" in result.stderr


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(weeks=2)),
        ("90m", timedelta(minutes=90)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 45S ", timedelta(seconds=45)),
    ],
)
def test_parse_age(text: str, age: timedelta) -> None:
    assert parse_age(text) == age


@pytest.mark.parametrize("text", ["", "30", "d", "30x", "-1d", "0d", "1.5h", "30d!"])
def test_parse_age_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_age(text)


async def test_follow_prints_new_records_until_ctrl_c(tmp_path: Path, env: dict[str, str], db_url: str) -> None:
    process = await asyncio.create_subprocess_exec(
        POMOGATOR,
        *("logs", "tail", "--follow", "--interval", "0.1", "--limit", "1"),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        first = [await asyncio.wait_for(process.stdout.readline(), 30) for _ in range(2)]
        assert first[1].decode().rstrip("\n").endswith("chat failed for 7 | RuntimeError: boom")

        async with open_database(db_url) as database, database.transaction():
            await LogRecord.insert(
                LogRecord(
                    created_at=utcnow(), level="INFO", logger="x", message="a new one", process="web", context="{}"
                )
            )
        # The header came once, before the first rows: a pipe gets one table.
        new = await asyncio.wait_for(process.stdout.readline(), 30)
        assert new.decode().rstrip("\n").endswith("a new one")
    finally:
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    # Ended as any command Ctrl-C stops: quietly, with 130.
    assert process.returncode == 130, err.decode()
    assert not err
