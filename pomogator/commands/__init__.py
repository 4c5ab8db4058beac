"""Typer sub-apps of the ``pomogator`` command line, registered in ``pomogator.cli``, the bounds of the numbers
commands take (a value past them is refused as bad input, not met deep down as an overflow), and the confirmation
destructive commands ask for."""

from __future__ import annotations

import sys

import typer

from pomogator import cli_output

# A person's Telegram id: positive, and a signed 64-bit integer as the database stores it.
TELEGRAM_ID_MIN = 1
TELEGRAM_ID_MAX = 2**63 - 1
# The most rows a listing shows.
MAX_ROWS = 1_000_000
# The most days of premium granted at once (about a century).
MAX_DAYS = 36_500


def confirm(question: str, refusal: str) -> None:
    """Ask ``question`` on a terminal (no: exit 1); with nobody to answer (stdin not a terminal: a script, cron, a
    pipe) refuse with ``refusal`` and exit 2, rather than go ahead unasked. ``--yes`` skips the call."""
    if not sys.stdin.isatty():
        cli_output.error(f"{refusal} without confirmation: stdin is not a terminal; pass --yes.")
        raise typer.Exit(2)
    typer.confirm(question, abort=True, err=True)
