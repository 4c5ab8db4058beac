"""Splitting long answers into Telegram messages: blocks kept whole, at most 100 entities a message, and chunks that
stay as they were sent while a streamed answer grows."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pomogator.services.formatting import (
    html_to_text,
    markdown_to_html,
    render_answer,
    render_answer_ending,
    split_html,
)
from pomogator.services.formatting.limits import TELEGRAM_ENTITY_LIMIT
from pomogator.services.formatting.text import Char, Tag, tokenize
from tests.fakes.telegram_html import ENTITY_LIMIT, check_message, parse_html

PARAGRAPH = "Это длинный абзац текста для проверки разбиения ответа на сообщения. "


def valid(chunks: list[str], limit: int = 4096) -> list[str]:
    """The chunks' visible texts, once each has passed the strict Telegram model (entities counted)."""
    return [check_message(chunk, "HTML", limit) for chunk in chunks]


def entity_count(chunk: str) -> int:
    return len(parse_html(chunk)[1])


def functions(count: int) -> str:
    """Python code with blank lines between its functions: where the splitter would like to cut it."""
    return "\n\n".join(
        f"def func_{i}(x):\n    # comment line for function {i}\n    return x * {i} + {i}" for i in range(count)
    )


# Code blocks


def test_a_code_block_that_fits_a_message_moves_whole_to_the_next_with_its_intro_line() -> None:
    code = functions(40)
    md = f"Пояснение:\n\n{PARAGRAPH * 30}\n\nВот полный код:\n\n```python\n{code}\n```\n\nГотово."
    chunks = render_answer(md)
    texts = valid(chunks)
    assert len(chunks) == 2
    assert sum(chunk.count("<pre>") for chunk in chunks) == 1
    assert texts[0].endswith("на сообщения.")
    assert texts[1] == f"Вот полный код:\n\n{code}\n\nГотово."


def test_a_code_block_longer_than_a_message_starts_one_and_is_cut_at_its_lines() -> None:
    code = functions(120)
    md = f"{PARAGRAPH * 30}\n\nВот код:\n\n```python\n{code}\n```"
    chunks = render_answer(md)
    texts = valid(chunks)
    assert texts[0].endswith("на сообщения.")
    assert texts[1].startswith("Вот код:\n\ndef func_0(x):")
    assert all(chunk.startswith('<pre><code class="language-python">def func_') for chunk in chunks[2:])
    # Cut between functions, where the code has its blank lines.
    assert all(text.split("\n")[-1].startswith("    return x * ") for text in texts[1:])
    lines = [line for text in texts[1:] for line in text.split("\n") if line.strip() and line != "Вот код:"]
    assert lines == [line for line in code.split("\n") if line.strip()]


def test_a_code_block_early_in_the_room_is_cut_rather_than_leave_a_stub_message() -> None:
    # The text before the block fills less than a quarter of the message: not worth a message of its own.
    intro = PARAGRAPH * 10
    code = functions(50)
    chunks = render_answer(f"{intro}\n\n```python\n{code}\n```")
    texts = valid(chunks)
    assert len(chunks) == 2
    assert texts[0].startswith(intro.strip()) and "def func_0(x):" in texts[0]
    assert len(texts[0]) > 4000


def test_a_code_block_moves_without_an_intro_line_that_would_leave_a_stub_behind() -> None:
    # Before the intro line the message would hold less than a quarter of the room: the line stays, the code moves.
    intro = "Вот код, " + "который делает всё, что нужно, " * 13 + "вот он:"
    md = f"{PARAGRAPH * 13}\n\n{intro}\n\n```\n{functions(40)}\n```"
    texts = valid(render_answer(md))
    assert texts[0].endswith("вот он:")
    assert texts[1].startswith("def func_0(x):")


# Headings and intro lines


def test_a_heading_is_not_left_at_the_bottom_of_a_message() -> None:
    section = "\n\n".join([PARAGRAPH * 12] * 4)
    md = f"## Раздел 1\n\n{section}\n\n## Раздел 2: Установка\n\n{PARAGRAPH * 12}\n\n```bash\npip install x\n```\n"
    texts = valid(render_answer(md))
    assert len(texts) == 2
    assert texts[0].endswith("на сообщения.")
    assert texts[1].startswith("Раздел 2: Установка\n\n")


def test_a_list_item_keeps_its_sub_items_in_its_message() -> None:
    md = "\n".join(f"- Пункт {i} " + "текст " * 10 + f"\n  - вложенный {i} " + "ещё " * 10 for i in range(60))
    texts = valid(render_answer(md))
    assert len(texts) >= 2
    for text in texts:
        # Each message starts with a top-level item and ends with a sub-item: none cut between an item and its own.
        assert text.startswith("• Пункт") and text.splitlines()[-1].startswith("   ◦ вложенный")


def test_a_line_ending_in_a_colon_goes_with_what_it_introduces() -> None:
    steps = "\n".join(f"{i}. Шаг номер {i}: " + "подробности шага " * 8 for i in range(1, 30))
    md = f"{PARAGRAPH * 30}\n\nСделайте следующее:\n\n{steps}"
    texts = valid(render_answer(md))
    assert texts[0].endswith("на сообщения.")
    assert texts[1].startswith("Сделайте следующее:\n\n1. Шаг номер 1:")


def test_a_heading_and_its_intro_line_move_on_together() -> None:
    md = f"{PARAGRAPH * 40}\n\n**Пример**\n\nВот так:\n\n{PARAGRAPH * 40}"
    texts = valid(render_answer(md))
    assert texts[1].startswith("Пример\n\nВот так:\n\n")


def test_a_bold_phrase_inside_a_line_is_no_heading() -> None:
    # The break falls after a line that has bold in it but is not bold throughout: nothing to move.
    line = "Обычная строка, в которой есть <b>жирное</b> слово"
    html = f"{'а ' * 40}\n\n{line}\n\n{'б ' * 40}"
    chunks = split_html(html, 150)
    assert html_to_text(chunks[0]).endswith("слово")


# Entities


def test_a_message_has_at_most_100_entities() -> None:
    items = [("status", "показывает состояние"), ("add", "добавляет файлы"), ("commit", "фиксирует изменения")]
    lines = [f"{i}. **{word}** — команда `git {word}`: {what}" for i, (word, what) in enumerate(items * 30, 1)]
    md = "## Шпаргалка по git\n\n" + "\n".join(lines)
    chunks = render_answer(md)
    valid(chunks)
    # The splitter keeps to the limit the fake Telegram enforces.
    assert TELEGRAM_ENTITY_LIMIT == ENTITY_LIMIT == 100
    assert [entity_count(chunk) for chunk in chunks] == [99, 82]
    # Cut at a line, as the length limit would be: the first message ends with item 49 whole.
    assert html_to_text(chunks[0]).endswith("49. status — команда git status: показывает состояние")


def test_a_short_answer_with_too_many_entities_is_split_too() -> None:
    md = " ".join(f"**{i}**" for i in range(150))
    assert len(markdown_to_html(md)) < 4096
    chunks = render_answer(md)
    assert [entity_count(chunk) for chunk in chunks] == [100, 50]
    assert " ".join(valid(chunks)) == " ".join(str(i) for i in range(150))


def test_a_closing_note_keeps_its_room_and_its_entities_in_the_last_message() -> None:
    """A stopped or broken-off answer ends with a note in italics: it must not push the last message past Telegram's
    limits, in length or in entities."""
    note = "<i>⏹ Остановлено.</i>"
    md = " ".join(f"**{i}**" for i in range(200))
    chunks = render_answer_ending(md, note)
    assert [entity_count(chunk) for chunk in chunks] == [99, 99, 3]
    assert chunks[-1].endswith("\n\n" + note)
    valid(chunks)
    long = PARAGRAPH * 60  # far over one message: the note's length is kept free too
    chunks = render_answer_ending(long, note)
    valid(chunks)
    assert chunks[-1].endswith(note)
    assert render_answer_ending("", note) == []


def test_tags_reopened_at_a_chunk_start_count_as_entities() -> None:
    html = "<blockquote>" + " ".join(f"<i>{i}</i>" for i in range(150)) + "</blockquote>"
    chunks = split_html(html)
    valid(chunks)
    assert [entity_count(chunk) for chunk in chunks] == [100, 52]
    assert chunks[1].startswith("<blockquote><i>99</i>")


def test_a_code_block_with_its_language_is_one_entity() -> None:
    block = '<pre><code class="language-python">x = 1</code></pre>'
    html = "\n".join([block] * 100)
    assert split_html(html) == [html]
    assert len(split_html(html + "\n<b>one more</b>")) == 2


def test_the_entity_limit_can_be_lowered() -> None:
    html = " ".join(f"<b>{i}</b>" for i in range(10))
    chunks = split_html(html, max_entities=3)
    assert [entity_count(chunk) for chunk in chunks] == [3, 3, 3, 1]
    assert render_answer("**a** **b** **c**", max_entities=2) == ["<b>a</b> <b>b</b>", "<b>c</b>"]


# Streaming: a chunk once filled stays as it was sent


def test_chunks_stay_as_sent_while_a_long_code_block_streams() -> None:
    # The block fits in the next message at first, then outgrows a message: the first message must not change.
    md = f"{PARAGRAPH * 30}\n\nВот полный код:\n\n```python\n{functions(150)}\n```\n\n## Итог\n\n{PARAGRAPH * 30}"
    final = render_answer(md)
    assert len(final) >= 4
    # Steps of a prime number of characters, much as a stream's pieces come (a few tokens each).
    for end in range(0, len(md) + 1, 97):
        filled = render_answer(md[:end])[:-1]
        assert filled == final[: len(filled)], end


def _close(atoms: list[Tag | Char]) -> str:
    """The HTML of ``atoms`` with the tags they leave open closed: a valid view of a prefix."""
    open_tags: list[str] = []
    for atom in atoms:
        if isinstance(atom, Tag):
            if atom.closing:
                open_tags.pop()
            else:
                open_tags.append(atom.name)
    return "".join(atom.raw for atom in atoms) + "".join(f"</{name}>" for name in reversed(open_tags))


_BLOCKS = st.one_of(
    st.integers(1, 12).map(lambda n: " ".join(["**жирный** текст `код`", "[ссылка](https://e.com) и слова"] * n)),
    st.integers(1, 4).map(lambda n: "#" * n + " Заголовок"),
    st.just("Вот код:"),
    st.integers(1, 40).map(lambda n: "```python\n" + functions(n) + "\n```"),
    st.integers(1, 15).map(lambda n: "\n".join(f"- пункт **{i}**" for i in range(n))),
    st.integers(1, 5).map(lambda n: "> цитата с *курсивом* " * n),
)


@settings(max_examples=40, deadline=None)
@given(blocks=st.lists(_BLOCKS, min_size=2, max_size=25), limit=st.sampled_from([120, 400, 1000]))
def test_a_growing_answer_never_changes_the_chunks_it_has_filled(blocks: list[str], limit: int) -> None:
    html = markdown_to_html("\n\n".join(blocks))
    atoms = tokenize(html)
    final = split_html(html, limit, max_entities=12)
    valid(final, limit)
    ends = [i + 1 for i, atom in enumerate(atoms) if isinstance(atom, Char) and not atom.text.isspace()]
    # The renderer's HTML never ends in whitespace, so neither does a view of a stream's prefix.
    for end in ends[:: max(1, len(ends) // 40)]:
        filled = split_html(_close(atoms[:end]), limit, max_entities=12)[:-1]
        assert filled == final[: len(filled)]
