"""Typer sub-apps of the ``pomogator`` command line, registered in ``pomogator.cli``, the bounds of the numbers
commands take (a value past them is refused as bad input, not met deep down as an overflow), and the confirmation
destructive commands ask for."""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand

from pomogator import cli_output

if TYPE_CHECKING:
    from typer.core import MarkupMode
    from typer.models import CommandFunctionType


def _is_terminal(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False


# Help and usage errors are drawn with rich (panels, colours) at a terminal; elsewhere (a pipe, a CI or container
# log) they are click's plain text, without box-drawing characters. Help goes to stdout and usage errors to stderr,
# and one mode serves both: rich only when both are terminals (`pomogator user --help | less` at a terminal is plain).
MARKUP_MODE: MarkupMode = "rich" if _is_terminal(sys.stdout) and _is_terminal(sys.stderr) else None

# A person's Telegram id: positive, and a signed 64-bit integer as the database stores it.
TELEGRAM_ID_MIN = 1
TELEGRAM_ID_MAX = 2**63 - 1
# The most rows a listing shows.
MAX_ROWS = 1_000_000
# The most days of premium granted at once (about a century).
MAX_DAYS = 36_500


# A required argument as typer writes it in a usage line: "{TELEGRAM_ID}", which reads as a list of choices.
_BRACED_ARGUMENT = re.compile(r"^\{([A-Z][A-Z0-9_]*)\}(\.\.\.)?$")


class Command(TyperCommand):
    """A command whose usage line names its required arguments as click does (``user show [OPTIONS] TELEGRAM_ID``),
    not in braces."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [_BRACED_ARGUMENT.sub(r"\1\2", piece) for piece in super().collect_usage_pieces(ctx)]


class App(typer.Typer):
    """The ``pomogator`` app and its sub-apps: their commands are ``Command``s."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[CommandFunctionType], CommandFunctionType]:
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)


def sub_app(help: str) -> typer.Typer:
    """A sub-app of ``pomogator`` (``pomogator db``, ``pomogator logs``...)."""
    return App(help=help, no_args_is_help=True, rich_markup_mode=MARKUP_MODE)


def unwrap_help(app: typer.Typer) -> None:
    """Make each command's docstring its help with every paragraph on one line (the help text wraps it to the
    terminal). Rich markup mode keeps a docstring's line breaks: a paragraph wrapped at the source's width came out
    broken mid-sentence."""
    for command in app.registered_commands:
        if command.help is None and command.callback is not None:
            paragraphs = (inspect.getdoc(command.callback) or "").split("\n\n")
            command.help = "\n\n".join(" ".join(line.strip() for line in part.splitlines()) for part in paragraphs)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            unwrap_help(group.typer_instance)


def confirm(question: str, refusal: str) -> None:
    """Ask ``question`` on a terminal (no, or Ctrl-D: exit 1; Ctrl-C: exit 130, as everywhere); with nobody to
    answer (stdin not a terminal: a script, cron, a pipe) refuse with ``refusal`` and exit 2, rather than go ahead
    unasked. ``--yes`` skips the call."""
    if not sys.stdin.isatty():
        cli_output.error(f"{refusal} without confirmation: stdin is not a terminal; pass --yes.")
        raise typer.Exit(2)
    try:
        typer.confirm(question, abort=True, err=True)
    except typer.Abort as exc:
        # typer's prompt answers Ctrl-C as a "no", with the KeyboardInterrupt only as the Abort's context.
        if isinstance(exc.__context__, KeyboardInterrupt):
            sys.stderr.write("\n")  # the prompt's line is left open
            raise typer.Exit(130) from None
        raise
