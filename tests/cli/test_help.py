"""The help text and usage errors as a person reads them, at a terminal and piped."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path
from typing import Any

import typer
import typer.main

from pomogator.cli import app
from pomogator.logs.records import LEVELS
from tests.cli.helpers import POMOGATOR, clean_env, run_cli

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
        (("user", "show"), "Usage: pomogator user show [OPTIONS] TELEGRAM_ID"),
        (("payments", "check"), "Usage: pomogator payments check [OPTIONS] PAYMENT_ID"),
        (("bot", "set-webhook"), "Usage: pomogator bot set-webhook [OPTIONS] URL"),
    ):
        result = await run_cli(*args, "--help", cwd=tmp_path, env=clean_env())
        assert result.code == 0
        assert result.stdout.splitlines()[0] == usage
    grant = await run_cli("user", "grant-premium", "--help", cwd=tmp_path, env=clean_env())
    assert "--days DAYS" in grant.stdout
    assert "<int range>" not in grant.stdout.split("Options:")[1]


def usages(command: Any, ctx: Any) -> dict[str, str]:
    """The usage line of ``command`` and of every command under it, by path."""
    found = {ctx.command_path: command.get_usage(ctx)}
    for name in getattr(command, "commands", {}):
        sub = command.get_command(ctx, name)
        found |= usages(sub, sub.make_context(name, [], parent=ctx, resilient_parsing=True))
    return found


def test_no_usage_line_puts_an_argument_in_braces() -> None:
    """Typer writes a required argument as "{TELEGRAM_ID}", which reads as a list of choices."""
    root = typer.main.get_command(app)
    found = usages(root, root.make_context("pomogator", [], resilient_parsing=True))
    assert len(found) > 20
    assert found["pomogator user grant-premium"] == "Usage: pomogator user grant-premium [OPTIONS] TELEGRAM_ID"
    for path, usage in found.items():
        assert "{" not in usage, path


def run_with_stderr_on_a_terminal(*args: str, cwd: Path) -> tuple[int, str]:
    """``pomogator *args`` with stdout piped and stderr on a terminal (``pomogator user --help | less``)."""
    controller, terminal = pty.openpty()
    try:
        env = clean_env(TERM="xterm-256color", COLUMNS="100")
        result = subprocess.run(
            [POMOGATOR, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=terminal, timeout=60, check=False
        )
    finally:
        os.close(terminal)
        os.close(controller)
    return result.returncode, result.stdout.decode()


def test_help_piped_is_plain_text_while_stderr_is_a_terminal(tmp_path: Path) -> None:
    code, out = run_with_stderr_on_a_terminal("user", "--help", cwd=tmp_path)
    assert code == 0
    assert not any(char in out for char in BOX_DRAWING), out
    assert "\x1b[" not in out
    assert out.startswith("Usage: pomogator user [OPTIONS] COMMAND [ARGS]...\n")


async def test_logs_tail_help_lists_the_levels_it_takes(tmp_path: Path) -> None:
    result = await run_cli("logs", "tail", "--help", cwd=tmp_path, env=clean_env())
    assert f"Only this level and above: {', '.join(LEVELS)}." in " ".join(result.stdout.split())


async def test_a_usage_error_piped_is_plain_text(tmp_path: Path) -> None:
    result = await run_cli("user", "show", cwd=tmp_path, env=clean_env())
    assert result.code == 2
    assert not any(char in result.stderr for char in BOX_DRAWING), result.stderr
    assert result.stderr.strip().splitlines()[-1] == "Error: Missing argument 'TELEGRAM_ID'."
