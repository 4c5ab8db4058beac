"""Listings as an operator sees them at an 80-column terminal: people's text shown as typed, ids whole."""

from __future__ import annotations

from pathlib import Path

from pomogator.container import Services
from pomogator.llm.catalog import load_catalog
from pomogator.services.users import Person
from tests.cli.helpers import clean_env
from tests.cli.terminal import run_in_terminal

USER_ID = 123456789
NAME = "Ann [/bold]"
ROLE = "[red]Be[/red] [link=https://evil.example]kind[/link] [/]"


async def test_user_list_and_show_print_names_and_roles_as_typed(services: Services, tmp_path: Path) -> None:
    """A first name or role holding rich markup crashed these commands ("closing tag '[/bold]' ...")."""
    await services.users.touch(Person(USER_ID, NAME, username="ann"))
    await services.users.set_role(USER_ID, ROLE)
    env = clean_env(POMOGATOR_DATABASE_URL=services.settings.database_url)

    listed = await run_in_terminal("user", "list", cwd=tmp_path, env=env)
    assert listed.code == 0, listed.stderr
    assert NAME in listed.stdout

    shown = await run_in_terminal("user", "show", str(USER_ID), cwd=tmp_path, env=env, columns=120)
    assert shown.code == 0, shown.stderr
    assert ROLE in shown.stdout
    assert "\x1b]8;" not in shown.stdout  # no hyperlink
    assert "\x1b[31m" not in shown.stdout  # nothing red


async def test_models_list_shows_whole_model_ids(tmp_path: Path) -> None:
    result = await run_in_terminal("models", "list", cwd=tmp_path, env=clean_env())
    assert result.code == 0, result.stderr
    assert "…" not in result.stdout
    for model_id in load_catalog().ids:
        assert f" {model_id} " in result.stdout
