"""Admin commands on users as an operator runs them: what they say about the person they act on."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pomogator.store.engine import open_database
from pomogator.store.tables import LogRecord, Subscription
from pomogator.timeutil import utcnow
from tests.cli.helpers import clean_env, run_cli
from tests.cli.terminal import ChatTerminal


async def test_granting_premium_to_an_id_that_never_wrote_says_it_was_created(tmp_path: Path, db_url: str) -> None:
    async with open_database(db_url, migrate=True):
        pass
    env = clean_env(POMOGATOR_DATABASE_URL=db_url)
    first = await run_cli("user", "grant-premium", "31337", "--days", "3", cwd=tmp_path, env=env)
    assert first.code == 0, first.stderr
    assert "User 31337 had never written to the bot: created." in first.stderr
    again = await run_cli("user", "grant-premium", "31337", "--days", "3", cwd=tmp_path, env=env)
    assert again.code == 0, again.stderr
    assert "created" not in again.stderr and "has premium until" in again.stderr


async def test_erasing_a_person_from_a_script_needs_yes(tmp_path: Path, db_url: str) -> None:
    async with open_database(db_url, migrate=True):
        pass
    env = clean_env(POMOGATOR_DATABASE_URL=db_url)
    assert (await run_cli("user", "grant-premium", "4040", "--days", "3", cwd=tmp_path, env=env)).code == 0
    unasked = await run_cli("user", "delete", "4040", cwd=tmp_path, env=env, stdin="n\n")
    assert unasked.code == 2
    assert "Not erasing user 4040 without confirmation" in unasked.stderr and "--yes" in unasked.stderr
    assert (await run_cli("user", "show", "4040", cwd=tmp_path, env=env)).code == 0  # still there
    erased = await run_cli("user", "delete", "4040", "--yes", cwd=tmp_path, env=env)
    assert erased.code == 0, erased.stderr
    assert (await run_cli("user", "show", "4040", cwd=tmp_path, env=env)).code == 1


async def test_granting_premium_past_the_year_9999_is_one_line(tmp_path: Path, db_url: str) -> None:
    """The 80th grant of 36500 days ended in an unexpected OverflowError."""
    async with open_database(db_url, migrate=True):
        until = datetime(9921, 8, 31, tzinfo=UTC)
        await Subscription.insert(
            Subscription(telegram_id=4041, plan="manual", starts_at=until, ends_at=until, created_at=until)
        )
    env = clean_env(POMOGATOR_DATABASE_URL=db_url)
    result = await run_cli("user", "grant-premium", "4041", "--days", "36500", cwd=tmp_path, env=env)
    assert result.code == 1
    assert result.stderr.strip() == (
        "Error: Premium of 4041 would end after the year 9999 (it runs until 9921-08-31); nothing was granted."
    )
    unknown = await run_cli("user", "show", "4041", cwd=tmp_path, env=env)
    assert unknown.code == 1  # no account was made for it


async def test_a_list_cut_at_its_limit_says_so(tmp_path: Path, db_url: str) -> None:
    """20,003 users were listed as 1000, without a word."""
    async with open_database(db_url, migrate=True):
        pass
    env = clean_env(POMOGATOR_DATABASE_URL=db_url)
    for telegram_id in ("501", "502", "503"):
        assert (await run_cli("user", "grant-premium", telegram_id, "--days", "1", cwd=tmp_path, env=env)).code == 0
    cut = await run_cli("user", "list", "--limit", "2", cwd=tmp_path, env=env)
    assert cut.code == 0, cut.stderr
    assert [line.split("\t")[0] for line in cut.stdout.splitlines()] == ["telegram_id", "503", "502"]
    assert cut.stderr == "Showing the newest 2 users; --limit for more.\n"
    whole = await run_cli("user", "list", "--limit", "3", cwd=tmp_path, env=env)
    assert len(whole.stdout.splitlines()) == 4 and whole.stderr == ""


async def test_ctrl_c_at_the_confirmation_exits_130_and_erases_nothing(tmp_path: Path, db_url: str) -> None:
    """typer's prompt took Ctrl-C for a "no": "Aborted." and exit code 1."""
    async with open_database(db_url, migrate=True):
        pass
    env = clean_env(POMOGATOR_DATABASE_URL=db_url)
    assert (await run_cli("user", "grant-premium", "4042", "--days", "3", cwd=tmp_path, env=env)).code == 0
    terminal = await ChatTerminal.start(tmp_path, env, args=("user", "delete", "4042"))
    await terminal.wait_for(b"Erase all data of user 4042? [y/N]: ")
    assert await terminal.interrupt() == 130
    assert b"Aborted" not in terminal.output
    assert (await run_cli("user", "show", "4042", cwd=tmp_path, env=env)).code == 0  # still there

    terminal = await ChatTerminal.start(tmp_path, env, args=("user", "delete", "4042"))
    await terminal.wait_for(b"[y/N]: ")
    terminal.type(b"n\r")
    assert await terminal.exited() == 1
    assert (await run_cli("user", "show", "4042", cwd=tmp_path, env=env)).code == 0


async def add_leftovers(db_url: str, telegram_id: int) -> None:
    """A subscription and a log record under ``telegram_id``, which has no account."""
    async with open_database(db_url, migrate=True):
        now = utcnow()
        await Subscription.insert(
            Subscription(telegram_id=telegram_id, plan="manual", starts_at=now, ends_at=now, created_at=now)
        )
        await LogRecord.insert(
            LogRecord(
                created_at=now,
                level="INFO",
                logger="t",
                message="m",
                process="bot",
                telegram_id=telegram_id,
                context={},
            )
        )


async def test_erasing_an_id_without_an_account_says_what_it_erased(tmp_path: Path, db_url: str) -> None:
    """It erased the id's log records and subscription, then said "User 555 not found" and exited 1."""
    await add_leftovers(db_url, 555)
    env = clean_env(POMOGATOR_DATABASE_URL=db_url)
    result = await run_cli("user", "delete", "555", "--yes", cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    assert result.stderr.strip() == (
        "User 555 had no account; erased what was stored under the id: 1 subscription, 1 log record."
    )
    again = await run_cli("user", "delete", "555", "--yes", cwd=tmp_path, env=env)
    assert again.code == 1
    assert again.stderr.strip() == "Error: User 555 not found: nothing is stored under this id."


async def test_erasing_asks_about_what_is_there(tmp_path: Path, db_url: str) -> None:
    """It asked "Erase all data of user 99?" and only after a "y" said the user was not found."""
    await add_leftovers(db_url, 556)
    env = clean_env(POMOGATOR_DATABASE_URL=db_url)
    unknown = await run_cli("user", "delete", "99", cwd=tmp_path, env=env, stdin="y\n")
    assert unknown.code == 1
    assert unknown.stderr.strip() == "Error: User 99 not found: nothing is stored under this id."

    terminal = await ChatTerminal.start(tmp_path, env, args=("user", "delete", "556"))
    await terminal.wait_for(
        b"User 556 has no account, but 1 subscription, 1 log record under this id: erase it? [y/N]: "
    )
    terminal.type(b"y\r")
    assert await terminal.exited() == 0
    assert b"User 556 had no account; erased what was stored under the id" in terminal.output
