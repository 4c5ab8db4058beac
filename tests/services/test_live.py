"""What a live view shows of an answer still being written: no unfinished Markdown marker at its end."""

from __future__ import annotations

import pytest

from pomogator.services.formatting import render_answer
from pomogator.services.formatting.live import live_markdown
from pomogator.services.formatting.text import visible_text
from tests.fakes.telegram_html import check_message


@pytest.mark.parametrize(
    ("written", "live"),
    [
        ("**Шаг 1: Устан", "Шаг 1: Устан"),
        ("Текст\n**Шаг 1:** готово **ва", "Текст\n**Шаг 1:** готово ва"),
        ("Откройте [официальную документацию](https://docs.pyth", "Откройте официальную документацию"),
        ("См. [докумен", "См. докумен"),
        ("[a](http://x.com) и [b](http://y", "[a](http://x.com) и b"),
        ("Используйте `pip inst", "Используйте pip inst"),
        ("~~зачёр", "зачёр"),
        ("Текст </su", "Текст "),
    ],
)
def test_an_unfinished_marker_at_the_end_is_left_out(written: str, live: str) -> None:
    assert live_markdown(written) == live


@pytest.mark.parametrize(
    "written",
    [
        "Сноска [1]",  # no link: a reference
        "x**2 + y**2 и 2*3*4",  # arithmetic
        "готово **жирно** и `код`",  # closed
        "a < b",
        "```python\nx = `a **b",  # inside a code block everything is code
        "**Начало** абзаца\n\nновый абзац",  # only the last line is looked at
    ],
)
def test_finished_markdown_and_code_are_left_as_they_are(written: str) -> None:
    assert live_markdown(written) == written


def test_every_live_view_of_a_streamed_answer_is_valid_and_shows_no_marker_of_its_last_line() -> None:
    answer = "## Установка\n\n**Шаг 1:** скачайте [Python](https://www.python.org/downloads/) и `pip install x`.\n"
    for end in range(1, len(answer) + 1):
        for chunk in render_answer(live_markdown(answer[:end])):
            check_message(chunk, "HTML")
            last = visible_text(chunk).rsplit("\n", 1)[-1]
            assert "**" not in last and "](" not in last and "`" not in last
