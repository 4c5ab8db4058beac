"""``pomogator.cli_output`` on a terminal 80 columns wide and on a pipe: data is shown as it is, ids whole."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterator

import pytest

from pomogator import cli_output

PAYMENT_ID = "eec3b9f0-000f-5000-8000-1a2b3c4d5e6f"
MODEL_ID = "google/gemini-2.5-flash-preview"
# Rich markup in data: "[/]" and "[/bold]" close nothing (a crash), the others would colour or link.
MARKUP = ("[/]", "[/bold]", "[red]alarm[/red]", "[link=https://evil.example]click[/link]")
STYLE = re.compile(r"\x1b\[[0-9;]*m")


class Screen(io.StringIO):
    """What a terminal shows: rich sees a TTY and prints tables in colour. ``with screen:`` puts stdout and stderr
    on it (inside the test: pytest sets its own capture again between a test's set-up and its call)."""

    def isatty(self) -> bool:
        return True

    def text(self) -> str:
        return STYLE.sub("", self.getvalue())

    def __enter__(self) -> Screen:
        self.streams = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        sys.stdout, sys.stderr = self.streams


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> Iterator[Screen]:
    """A colour terminal 80 columns wide."""
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLORTERM", "truecolor")
    monkeypatch.setenv("COLUMNS", "80")
    cli_output.console.cache_clear()
    yield Screen()
    cli_output.console.cache_clear()


def test_the_terminal_fixture_is_a_colour_terminal(screen: Screen) -> None:
    with screen:
        console = cli_output.console()
        assert console.is_terminal and console.width == 80 and console.color_system is not None


def test_table_cells_are_shown_as_they_are(screen: Screen) -> None:
    rows = [(1, name, role) for name, role in zip(MARKUP, reversed(MARKUP), strict=True)]
    with screen:
        cli_output.print_table("User [/bold]", ["telegram_id", "name", "role"], rows)
    assert screen.text().startswith("User [/bold]\n")
    names, roles = columns(screen.text())[1:]
    assert names == "name" + "".join(MARKUP) and roles == "role" + "".join(reversed(MARKUP))
    assert "\x1b]8;" not in screen.getvalue()  # no hyperlink
    assert "\x1b[31m" not in screen.getvalue()  # nothing red


def test_control_characters_in_data_are_spelled_out(screen: Screen) -> None:
    message = "boom\x1b[31m \x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\ \x07"
    with screen:
        cli_output.print_table("Log records", ["id", "message"], [(1, message)])
        cli_output.notice(f"Deleted {message}")
    assert "\x1b]8;" not in screen.getvalue() and "\x07" not in screen.getvalue()
    assert "\x1b[31m" not in screen.getvalue()
    assert screen.text().count("boom\\x1b[31m") == 2


def test_notices_and_errors_show_data_as_it_is(screen: Screen) -> None:
    with screen:
        for text in MARKUP:
            cli_output.notice(f"Payment {text} :thumbs_up: is refunded.")
            cli_output.error(f"Unknown model '{text}' :x:.")
    lines = screen.text().splitlines()
    assert lines == [
        line
        for text in MARKUP
        for line in (f"Payment {text} :thumbs_up: is refunded.", f"Error: Unknown model '{text}' :x:.")
    ]
    assert "\x1b]8;" not in screen.getvalue()


USERS = (
    ["telegram_id", "username", "name", "model", "premium until", "since"],
    (123456789, "ann_smith", "Ann Smith-Johnson", MODEL_ID, "2026-12-01 12:00", "2026-11-01 12:00"),
)
LOGS = (
    ["id", "time", "level", "process", "user", "logger", "message"],
    (123456, "2026-11-01 12:00:01", "ERROR", "bot", 123456789, "pomogator.bot.handlers", "chat failed " * 9),
)


@pytest.mark.parametrize(("header", "row"), [USERS, LOGS], ids=["users", "logs"])
def test_ids_and_dates_are_whole_in_80_columns(screen: Screen, header: list[str], row: tuple[object, ...]) -> None:
    with screen:
        cli_output.print_table("Table", header, [row])
    shown = screen.text()
    assert "…" not in shown
    assert all(len(line) <= 80 for line in shown.splitlines())
    # The first column, the row's key, is on one line; the others may go on over the lines below.
    key_line = next(line for line in shown.splitlines() if line.startswith("│"))
    assert key_line.split("│")[1].strip() == str(row[0])
    assert columns(shown, header=False) == [str(value).replace(" ", "") for value in row]


def test_a_table_too_wide_for_the_terminal_shows_a_block_per_row(screen: Screen) -> None:
    columns = ["payment", "user", "plan", "amount", "status", "refunded", "reason", "created"]
    rows = [
        (PAYMENT_ID, 123456789, "month", "599.00 RUB", "succeeded", "299.50", "", "2026-11-01 12:00"),
        ("(local 7)", 123456789, "year", "4990.00 RUB", "canceled", "", "expired_on_confirmation", "2026-11-02 12:00"),
    ]
    with screen:
        cli_output.print_table("Payments", columns, rows)
    shown = screen.text()
    assert "…" not in shown
    assert all(len(line) <= 80 for line in shown.splitlines())
    assert re.search(rf"│ payment +│ {PAYMENT_ID} +│", shown)
    for text in ("599.00 RUB", "expired_on_confirmation", "2026-11-01 12:00", "(local 7)"):
        assert re.search(rf"│ \w+ +│ {re.escape(text)} +│", shown), text


def test_piped_tables_are_tab_separated_lines(capsys: pytest.CaptureFixture[str]) -> None:
    cli_output.print_table("Log records", ["id", "message"], [(1, "[red]a\tb\nc[/red]"), (2, None)])
    cli_output.print_table("New log records", ["id", "message"], [(3, "[/]")], continued=True)
    assert capsys.readouterr().out == "id\tmessage\n1\t[red]a b c[/red]\n2\t\n3\t[/]\n"


def test_piped_tables_spell_out_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    """Piped, a name's escape sequences reached the terminal of `| grep` or `| less -R`, and a carriage return split
    the record."""
    name = "Evil\x1b]0;pwned\x07\x1b[2J"
    cli_output.print_table("Users", ["telegram_id", "username", "name"], [(7, "user\rname", name), (8, "\x9b\x7f", "")])
    out = capsys.readouterr().out
    assert out == "telegram_id\tusername\tname\n7\tuser\\rname\tEvil\\x1b]0;pwned\\x07\\x1b[2J\n8\t\\x9b\\x7f\t\n"
    assert not cli_output.CONTROL.search(out)


def columns(shown: str, *, header: bool = True) -> list[str]:
    """The text of each column of a table, its lines (wrapped ones too) joined without spaces."""
    lines = [line for line in shown.splitlines() if line.startswith(("│", "┃") if header else "│")]
    cells = [re.split("[│┃]", line)[1:-1] for line in lines]
    return ["".join(cell.strip() for cell in column).replace(" ", "") for column in zip(*cells, strict=True)]
