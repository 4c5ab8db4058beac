"""``pomogator logs tail`` with records the first tests did not have: a blank exception text, markup in a message,
new records arriving while it follows the log through a pipe."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from pomogator.store.engine import open_database
from pomogator.store.tables import LogRecord
from pomogator.timeutil import utcnow
from tests.cli.helpers import POMOGATOR, clean_env, run_cli
from tests.cli.terminal import run_in_terminal

HEADER = "id\ttime (MSK)\tlevel\tprocess\tuser\tlogger\tmessage\n"  # the times are the configured zone's


async def add_logs(url: str, *messages: str, exception: str | None = None) -> None:
    async with open_database(url, migrate=True) as database, database.transaction():
        await LogRecord.insert(
            *(
                LogRecord(
                    created_at=utcnow(),
                    level="ERROR",
                    logger="pomogator.bot",
                    message=message,
                    process="bot",
                    context="{}",
                    exception=exception,
                )
                for message in messages
            )
        )


async def test_tail_shows_a_record_whose_exception_text_is_blank(tmp_path: Path, db_url: str) -> None:
    await add_logs(db_url, "failed quietly", exception=" \n\t\n")
    result = await run_cli("logs", "tail", cwd=tmp_path, env=clean_env(POMOGATOR_DATABASE_URL=db_url))
    assert result.code == 0, result.stderr
    assert result.stdout.startswith(HEADER)
    assert result.stdout.splitlines()[1].split("\t")[6] == "failed quietly"


async def test_tail_on_a_terminal_shows_messages_as_logged(tmp_path: Path, db_url: str) -> None:
    message = "[red]alarm[/red] [link=https://evil.example]click[/link] [/]"
    await add_logs(db_url, message, exception="Traceback (most recent call last):\nRuntimeError: [/bold]")
    env = clean_env(POMOGATOR_DATABASE_URL=db_url)
    result = await run_in_terminal("logs", "tail", cwd=tmp_path, env=env, columns=200)
    assert result.code == 0, result.stderr
    assert f"{message} | RuntimeError: [/bold]" in result.stdout
    assert "\x1b]8;" not in result.stdout and "\x1b[31m" not in result.stdout


async def test_follow_through_a_pipe_prints_the_header_once(tmp_path: Path, db_url: str) -> None:
    await add_logs(db_url, "before")
    process = await asyncio.create_subprocess_exec(
        POMOGATOR,
        *("logs", "tail", "--follow", "--interval", "0.1"),
        cwd=tmp_path,
        env=clean_env(POMOGATOR_DATABASE_URL=db_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        lines = [(await asyncio.wait_for(process.stdout.readline(), 30)).decode() for _ in range(2)]
        for batch in (("first",), ("second", "third")):
            await add_logs(db_url, *batch)
            lines += [(await asyncio.wait_for(process.stdout.readline(), 30)).decode() for _ in batch]
    finally:
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 130, err.decode()  # Ctrl-C ends it, as it ends every command
    assert lines[0] == HEADER
    assert [line.rstrip("\n").split("\t")[6] for line in lines[1:]] == ["before", "first", "second", "third"]
    assert out == b""
