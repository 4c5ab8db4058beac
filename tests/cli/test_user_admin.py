"""Admin commands on users as an operator runs them: what they say about the person they act on."""

from __future__ import annotations

from pathlib import Path

from pomogator.store.engine import open_database
from tests.cli.helpers import clean_env, run_cli


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
