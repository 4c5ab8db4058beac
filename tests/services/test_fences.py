"""An answer going on with the code block its predecessor, cut off by the length limit, left open."""

from __future__ import annotations

import pytest

from pomogator.services.formatting import render_answer
from pomogator.services.formatting.fences import continued_code, open_fence

CUT_OFF = "Вот код:\n\n```python\ndef calc(*args):\n    total = 0\n    for a in args:\n        total += a\n"
GOES_ON = (
    '        return total\n\n# Точка входа\nif __name__ == "__main__":\n    print(calc(1, 2))\n```\n\n'
    "**Как это работает:** функция считает сумму.\n\n- пункт"
)


@pytest.mark.parametrize(
    ("markdown", "fence"),
    [
        (CUT_OFF, "```python"),
        ("~~~~\n```\nstill code", "~~~~"),  # a shorter fence or another kind closes nothing
        ("- шаг:\n\n   ```bash\n   pip install x", "```bash"),  # in a list item
        ("```\nx\n```", None),
        ("```js\nx\n````\n", None),  # a longer closing fence closes it too
        ("строка с ``` внутри", None),
        ("``` a`b\nx", None),  # a backtick fence's info string holds no backtick: no fence
        ("Просто текст", None),
    ],
)
def test_the_block_an_answer_ends_inside_is_found(markdown: str, fence: str | None) -> None:
    assert open_fence(markdown) == fence


def test_an_answer_going_on_with_the_open_block_is_shown_as_its_code_then_the_prose() -> None:
    shown = continued_code(GOES_ON, open_fence(CUT_OFF))
    assert shown == f"```python\n{GOES_ON}"
    [html] = render_answer(shown)
    assert html.startswith('<pre><code class="language-python">        return total\n\n# Точка входа\nif __name__')
    assert html.endswith("</code></pre>\n\n<b>Как это работает:</b> функция считает сумму.\n\n• пункт")
    # Alone, the code was prose and the closing fence opened a block that swallowed the explanation.
    [alone] = render_answer(GOES_ON)
    assert "<b>Точка входа</b>" in alone and alone.endswith("- пункт</pre>")


@pytest.mark.parametrize(
    "answer",
    [
        "Продолжаю:\n\n```python\n        return total\n```\n\nГотово.",  # the model opened the block again
        "```python\n        return total\n```",
        "Код выше полный, добавлю только пример.",  # no fence at all
        "        return total\n```\n\nЕщё код:\n```python\nx = 1",  # ends inside a new block: not told apart
    ],
)
def test_an_answer_that_does_not_go_on_with_the_block_is_shown_as_it_is(answer: str) -> None:
    assert continued_code(answer, "```python") == answer


def test_without_an_open_block_before_nothing_is_added() -> None:
    assert continued_code(GOES_ON, None) == GOES_ON
