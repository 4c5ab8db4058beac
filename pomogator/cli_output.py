"""How the CLI shows things: rich tables on a terminal, full tab-separated lines when piped.

rich is imported on first use: ``run bot`` and ``run web`` go through the CLI too and never print through it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


@functools.cache
def console(*, err: bool = False) -> Console:
    """The console for standard output, or for standard error with ``err``."""
    from rich.console import Console

    return Console(stderr=err, soft_wrap=True, highlight=False)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    if sys.stdout.isatty():
        from rich.table import Table

        table = Table(title=title)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        console().print(table)
        return
    out = sys.stdout
    out.write("\t".join(columns) + "\n")
    for row in rows:
        out.write("\t".join("" if v is None else str(v).replace("\t", " ").replace("\n", " ") for v in row) + "\n")
    out.flush()


def error(message: str) -> None:
    from rich.markup import escape

    # The message may quote input ("Unknown model 'x[/y]'"): rich must not read it as markup.
    console(err=True).print(f"[red]Error:[/red] {escape(message)}", markup=True)


def notice(message: str) -> None:
    console(err=True).print(message, markup=False)
