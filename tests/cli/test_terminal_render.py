"""How ``pomogator chat`` shows a streamed answer on a terminal (``pomogator.terminal_render``)."""

from __future__ import annotations

import asyncio
import io

import pytest
from rich.console import Console

from pomogator import terminal_render
from pomogator.terminal_render import AnswerView, ChatMarkdown, Cut, clean, finished_part

ANSWER = """# Title

A paragraph with **bold** and `code`, long enough to be wrapped at forty columns.
Its second line.

- one
- two

  more of two
- three

1. first
2. second

```python
def f():

    return 1
```

> quoted

---

| a | b |
|---|---|
| 1 | 2 |

Vec<String> and <div> stay.
A heading
---------
The end.
"""


def plain_console(width: int = 40) -> Console:
    """A console writing to a string, as a file or a pipe gets it."""
    return Console(file=io.StringIO(), width=width, color_system=None)


def terminal_console(width: int = 40, height: int = 10) -> Console:
    return Console(file=io.StringIO(), width=width, height=height, force_terminal=True, color_system=None)


def output(console: Console) -> str:
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def still() -> float:
    """A clock for drawing every piece at once (``interval=0``): it sees no drawing take any time."""
    return 0.0


def whole(text: str) -> str:
    console = plain_console()
    console.print(ChatMarkdown(text))
    return output(console)


def test_formulas_are_shown_as_written() -> None:
    shown = whole("Корни $x^*$ и $y^*$:\n\n$$\n\\{ a \\} \\\\ b\n$$\n")
    assert "Корни x^* и y^*:" in shown
    assert "\\{ a \\} \\\\ b" in shown


def test_addresses_arithmetic_and_sources_are_shown_as_written() -> None:
    console = plain_console(width=100)
    console.print(
        ChatMarkdown(
            "См. https://github.com/psf/requests/blob/main/src/requests/__init__.py и 2*3*4 = 24, x**2 + y**2.\n\n"
            "**Источники:**\n\n[1]: rosstat.gov.ru\n\nМосква[^1]\n\n[^1]: Росстат\n"
        )
    )
    shown = output(console)
    assert "https://github.com/psf/requests/blob/main/src/requests/__init__.py" in shown
    assert "2*3*4 = 24, x**2 + y**2." in shown
    assert "[1]: rosstat.gov.ru" in shown
    assert "Москва¹" in shown and "¹ Росстат" in shown


def test_line_breaks_inside_a_paragraph_are_kept_as_in_the_bot() -> None:
    shown = whole("Москва,\nул. Тверская, 1\n\n- шаг первый\n  и его пояснение")
    assert [line.rstrip() for line in shown.splitlines() if line.strip()] == [
        "Москва,",
        "ул. Тверская, 1",
        " • шаг первый",
        "   и его пояснение",
    ]


@pytest.mark.parametrize("size", [1, 2, 5, 16, len(ANSWER)])
async def test_a_streamed_answer_shows_as_the_whole_answer_rendered_once(size: int) -> None:
    console = plain_console()
    with AnswerView(console, interval=0, clock=still) as view:
        for start in range(0, len(ANSWER), size):
            view.add(ANSWER[start : start + size])
        if size < len(ANSWER):
            # Finished blocks were printed for good while the answer streamed.
            assert "A paragraph with bold" in output(console)
    assert output(console) == whole(ANSWER)


async def test_finished_blocks_are_printed_while_the_answer_grows() -> None:
    """An answer taller than the screen: each paragraph is printed once the next starts, never an "..."."""
    console = terminal_console(height=8)
    with AnswerView(console, interval=0, clock=still) as view:
        for number in range(20):
            view.add(f"Paragraph {number} says something.\n\n")
            if number:
                assert f"Paragraph {number - 1} says" in output(console)
    assert "..." not in output(console)
    assert "Paragraph 19 says" in output(console)


async def test_a_block_taller_than_the_screen_shows_where_it_grows() -> None:
    console = terminal_console(height=8)
    with AnswerView(console, interval=0, clock=still) as view:
        view.add("```\n")
        for number in range(30):
            view.add(f"line {number}\n")
        assert "line 29" in output(console)
        assert "..." not in output(console)
        view.add("```\n")


async def test_redraws_are_at_most_at_the_refresh_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """6000 tokens took 12 s of CPU when every token parsed and drew the whole answer again."""
    made = 0

    class CountedMarkdown(ChatMarkdown):
        def __init__(self, markup: str) -> None:
            nonlocal made
            made += 1
            super().__init__(markup)

    monkeypatch.setattr(terminal_render, "ChatMarkdown", CountedMarkdown)
    now = 100.0
    console = terminal_console()
    with AnswerView(console, interval=0.5, clock=lambda: now) as view:
        for number in range(2000):
            view.add(f"word{number} ")
        drawn = made
        now += 1
        view.add("and more.\n")
    assert drawn <= 2  # the first piece, at once: the others wait for the interval
    assert made <= drawn + 3
    assert "word1999 and more." in output(console)


async def test_redraws_keep_to_the_refresh_rate_when_drawing_is_slow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once one drawing took longer than the interval, every piece drew the open block again: a long code block
    streamed several times slower than the model, at 100% CPU."""
    made = 0
    now = 100.0

    class SlowMarkdown(ChatMarkdown):
        def __init__(self, markup: str) -> None:
            nonlocal made, now
            made += 1
            now += 0.3  # drawing takes longer than the interval
            super().__init__(markup)

    monkeypatch.setattr(terminal_render, "ChatMarkdown", SlowMarkdown)
    console = terminal_console()
    with AnswerView(console, interval=0.125, clock=lambda: now) as view:
        view.add("```python\n")
        for number in range(200):
            view.add(f"x{number} = {number}\n")
        drawn = made
        now += 1
        view.add("y = 1\n")
    assert drawn <= 2  # the first piece, at once: the others wait for the interval, and for longer
    assert made <= drawn + 3
    assert "x199 = 199" in output(console)


@pytest.mark.parametrize(
    ("opening", "row", "unrendered"),
    [
        ("```python\n", "line_{} = {}\n", "line_298 = 298 line_299"),
        ("| name | value |\n|---|---|\n", "| line_{} | {} |\n", "| line_299"),
    ],
)
async def test_only_the_end_of_a_long_open_block_is_drawn(
    monkeypatch: pytest.MonkeyPatch, opening: str, row: str, unrendered: str
) -> None:
    """The preview of a block taller than the screen renders the lines that fit, not all of them, and shows them as
    the block does: a code fence's or a table's lines stay lines."""
    drawn: list[int] = []

    class CountedMarkdown(ChatMarkdown):
        def __init__(self, markup: str) -> None:
            drawn.append(markup.count("\n"))
            super().__init__(markup)

    monkeypatch.setattr(terminal_render, "ChatMarkdown", CountedMarkdown)
    console = terminal_console(height=10)
    with AnswerView(console, interval=0, clock=still) as view:
        view.add(opening)
        for number in range(300):
            view.add(row.format(number, number))
        assert max(drawn) <= 12
        assert "line_299" in output(console)
        assert unrendered not in output(console)
    assert drawn[-1] >= 300  # the whole block once it ends
    assert "line_0" in output(console)


async def test_a_piece_followed_by_a_pause_is_shown_without_waiting_for_the_next() -> None:
    console = terminal_console()
    with AnswerView(console, interval=0.05) as view:
        view.add("first ")
        view.add("second")
        assert "second" not in output(console)
        await asyncio.sleep(0.2)
        assert "first second" in output(console)


@pytest.mark.parametrize("text", ["Vec<String>", "List<T>", "a<b and c>d", "<div>", "x <br> y", "<!-- note -->"])
async def test_text_that_looks_like_html_is_shown_as_written(text: str) -> None:
    for markdown in (f"Use {text} here.\n", f"{text}\n\nnext\n"):
        assert text in whole(markdown)
        console = plain_console(width=60)
        with AnswerView(console, interval=0, clock=still) as view:
            view.add(markdown)
        assert text in output(console)


def test_control_characters_are_removed_but_newlines_and_tabs() -> None:
    text = "\x1b[31mRED\x1b[0m \x1b]0;title\x07a\tb\nc\r\n\x00\x08\x7f\x9b1m."
    assert clean(text) == "[31mRED[0m ]0;titlea\tb\nc\n1m."


async def test_escape_sequences_from_the_model_do_not_reach_the_terminal() -> None:
    console = terminal_console()
    with AnswerView(console, interval=0, clock=still) as view:
        view.add("Look: \x1b[31mRED\x1b[0m and \x1b]0;owned\x07 and `\x1b[2J` and\n\n```\n\x1b[5m\n```\n")
    shown = output(console)
    assert "RED" in shown
    for sequence in ("\x1b[31m", "\x1b]0;", "\x07", "\x1b[2J", "\x1b[5m"):
        assert sequence not in shown


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ("One paragraph\nstill growing\n", Cut(0)),
        ("One.\n\nTwo.\n", Cut(6, gap=True)),
        ("One.\n\nTw", Cut(0)),  # the next block is not started on a whole line yet
        ("One.\n#", Cut(0)),  # "#" could still become "#hashtag", which goes on the paragraph
        ("```\na\n\nb\n", Cut(0)),  # blank lines inside an open code fence
        ("```\na\n\nb\n```\nAfter\n", Cut(13, gap=True)),
        ("- one\n- two\n", Cut(6, inside_list=True)),
        ("Intro\n\n1. one\n\n2. two\n", Cut(15, inside_list=True)),
        ("---\nAfter\n", Cut(4)),  # a rule ends with a blank line of its own
        ("Title\n=====\nText\n", Cut(12, gap=True)),
    ],
)
def test_finished_part(text: str, cut: Cut) -> None:
    assert finished_part(text) == cut
