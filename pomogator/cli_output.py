"""How the CLI shows things: rich tables on a terminal, full tab-separated lines when piped.

What is shown comes from people and services (a Telegram name, a role, a log message, Telegram's error text), so
on a terminal it is printed literally: never read as rich markup (``[/]`` would crash, ``[link=...]`` would make a
link) or emoji codes. On a terminal and piped alike, control characters are spelled out instead of reaching the
terminal (piped output ends up on one too: ``| grep``, ``| less -R``).

rich is imported on first use: ``run bot`` and ``run web`` never print through it.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

# C0 and C1 control characters but tab and newline: an escape sequence in a log message must not drive the terminal.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Other columns narrower than this read worse than one block per row.
MIN_COLUMN_WIDTH = 6


@functools.cache
def console(*, err: bool = False) -> Console:
    """The console for standard output, or for standard error with ``err``."""
    from rich.console import Console

    return Console(stderr=err, soft_wrap=True, highlight=False, emoji=False)


def literal(value: object) -> Text:
    """``value`` as text rich shows as it is (None shows as nothing)."""
    from rich.text import Text

    return Text(spelled_out("" if value is None else str(value)))


def spelled_out(text: str) -> str:
    """``text`` with its control characters (but tab and newline) spelled out as Python writes them: ``\\x1b``."""
    return CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


def _field(value: object) -> str:
    """A cell of a piped table: on one line, without tabs, control characters spelled out as on a terminal (an
    escape sequence would reach the terminal of `| grep` or `| less -R`; a carriage return splits a record for many
    tools)."""
    text = "" if value is None else str(value)
    return spelled_out(text.replace("\t", " ").replace("\n", " "))


def print_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[object]], *, continued: bool = False
) -> None:
    """Print ``rows``: a table on a terminal, tab-separated lines under a header line when piped; either way with
    control characters spelled out.

    ``continued``: the rows follow a table already printed (``logs tail --follow``); piped, the header is not
    repeated.
    """
    if sys.stdout.isatty():
        out = console()
        cells = [[literal(v) for v in row] for row in rows]
        table = _table(title, columns, cells)
        if not _fits(table, out.width):
            table = _records(title, columns, cells)
        out.print(table)
        return
    out_file = sys.stdout
    if not continued:
        out_file.write("\t".join(columns) + "\n")
    for row in rows:
        out_file.write("\t".join(_field(v) for v in row) + "\n")
    out_file.flush()


def _table(title: str, columns: Sequence[str], cells: Sequence[Sequence[Text]]) -> Table:
    from rich.table import Table

    table = Table(title=literal(title))
    for index, column in enumerate(columns):
        if index == 0:
            # The row's key (a payment, log, user or model id) is what an operator copies: whole, on one line.
            key_width = max([len(column), *(row[0].cell_len for row in cells)])
            table.add_column(literal(column), no_wrap=True, min_width=key_width)
        else:
            # Wrapped at spaces; a word wider than the column goes on over the next line instead of ending in "…".
            table.add_column(literal(column), overflow="fold")
    for row in cells:
        table.add_row(*row)
    return table


def _fits(table: Table, width: int) -> bool:
    """Whether ``table`` fits ``width`` with its key column whole and the others at least MIN_COLUMN_WIDTH."""
    key, *others = table.columns
    # A rule before every column and one after the last, a space either side of every cell.
    borders = 1 + 3 * len(table.columns)
    return (key.min_width or 0) + MIN_COLUMN_WIDTH * len(others) + borders <= width


def _records(title: str, columns: Sequence[str], cells: Sequence[Sequence[Text]]) -> Table:
    """The rows as blocks of ``column value`` lines: the table for a terminal too narrow for one line a row."""
    from rich.table import Table

    table = Table(title=literal(title), show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for row in cells:
        for column, cell in zip(columns, row, strict=True):
            table.add_row(literal(column), cell)
        table.add_section()
    return table


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, for an error told in one line."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else "no details"


def error(message: str) -> None:
    """Print ``Error: message`` on stderr; the message may quote input ("Unknown model 'x[/y]'") and is shown as
    it is."""
    from rich.text import Text

    console(err=True).print(Text.assemble(("Error:", "red"), " ", literal(message)))


def notice(message: str) -> None:
    """Print a line for the operator on stderr, as it is."""
    console(err=True).print(literal(message))
