"""The help text and usage errors as a person reads them, at a terminal and piped."""

from __future__ import annotations

from pathlib import Path

import typer

from pomogator.cli import app
from pomogator.logs.records import LEVELS
from tests.cli.helpers import clean_env, run_cli

BOX_DRAWING = ("╭", "│", "╰", "─")


def helps(typer_app: typer.Typer) -> dict[str, str]:
    """Every command's help, by name, as the app gives it to typer."""
    found = {str(c.name): c.help or "" for c in typer_app.registered_commands}
    for group in typer_app.registered_groups:
        assert group.typer_instance is not None
        found |= {f"{group.name} {name}": text for name, text in helps(group.typer_instance).items()}
    return found


def test_every_help_paragraph_is_one_line_for_the_help_to_wrap() -> None:
    """Rich markup mode keeps a docstring's line breaks: a paragraph wrapped in the source came out broken
    mid-sentence ("a line ending in \\ goes on in⏎the next one")."""
    found = helps(app)
    assert len(found) > 20
    for name, text in found.items():
        assert text, name
        for paragraph in text.split("\n\n"):
            assert "\n" not in paragraph, f"{name}: {paragraph!r}"
    assert found["chat"].startswith("Chat with a model in the terminal.\n\n")


async def test_arguments_and_options_are_named_in_capitals(tmp_path: Path) -> None:
    for args, usage in (
        (("user", "show"), "Usage: pomogator user show [OPTIONS] {TELEGRAM_ID}"),
        (("payments", "check"), "Usage: pomogator payments check [OPTIONS] {PAYMENT_ID}"),
        (("bot", "set-webhook"), "Usage: pomogator bot set-webhook [OPTIONS] {URL}"),
    ):
        result = await run_cli(*args, "--help", cwd=tmp_path, env=clean_env())
        assert result.code == 0
        assert result.stdout.splitlines()[0] == usage
    grant = await run_cli("user", "grant-premium", "--help", cwd=tmp_path, env=clean_env())
    assert "--days DAYS" in grant.stdout
    assert "<int range>" not in grant.stdout.split("Options:")[1]


async def test_logs_tail_help_lists_the_levels_it_takes(tmp_path: Path) -> None:
    result = await run_cli("logs", "tail", "--help", cwd=tmp_path, env=clean_env())
    assert f"Only this level and above: {', '.join(LEVELS)}." in " ".join(result.stdout.split())


async def test_a_usage_error_piped_is_plain_text(tmp_path: Path) -> None:
    result = await run_cli("user", "show", cwd=tmp_path, env=clean_env())
    assert result.code == 2
    assert not any(char in result.stderr for char in BOX_DRAWING), result.stderr
    assert result.stderr.strip().splitlines()[-1] == "Error: Missing argument 'TELEGRAM_ID'."
