"""``pomogator chat`` in a terminal of a given size: what the person at it sees of an answer."""

from __future__ import annotations

from pathlib import Path

from tests.cli.helpers import clean_env
from tests.cli.terminal import ChatTerminal
from tests.conftest import TEST_API_KEY
from tests.fakes.openai_server import FakeLLM, Reply


async def test_an_answer_shows_whole_at_the_terminal_width(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """Lines wrap instead of being cut at the width, HTML-like text shows, the model's escape codes do not."""
    paragraph = " ".join(f"word{number}" for number in range(40)) + " paragraph-end"
    fake_llm.enqueue(
        Reply(text=f"{paragraph}\n\nA Vec<String> or List<T>, \x1b[31mRED\x1b[0m and \x1b]0;owned\x07 answer-end")
    )
    env = clean_env(POMOGATOR_OPENROUTER_API_KEY=TEST_API_KEY, POMOGATOR_OPENROUTER_BASE_URL=fake_llm.base_url)
    terminal = await ChatTerminal.start(tmp_path, env, columns=40, rows=12)
    await terminal.wait_for(b"you> ")
    terminal.type(b"hello\n")
    await terminal.wait_for(b"you> ", count=2)
    assert await terminal.end() == 0
    shown = terminal.output
    assert b"answer-end" in shown
    assert b"paragraph-end" in shown
    assert b"Vec<String>" in shown and b"List<T>" in shown
    assert b"RED" in shown
    for sequence in (b"\x1b[31mRED", b"\x1b]0;", b"\x07"):
        assert sequence not in shown


async def test_lines_pasted_at_once_are_one_message(tmp_path: Path, fake_llm: FakeLLM) -> None:
    env = clean_env(POMOGATOR_OPENROUTER_API_KEY=TEST_API_KEY, POMOGATOR_OPENROUTER_BASE_URL=fake_llm.base_url)
    terminal = await ChatTerminal.start(tmp_path, env)
    await terminal.wait_for(b"you> ")
    terminal.type(b"Fix this:\ndef f(x):\n    return x +\n")  # a paste: the terminal gets the lines at once
    await terminal.wait_for(b"you> ", count=2)
    terminal.type(b"and explain\n")  # typed after the answer: a message of its own
    await terminal.wait_for(b"you> ", count=3)
    assert await terminal.end() == 0
    assert [request.messages[-1]["content"] for request in fake_llm.requests] == [
        "Fix this:\ndef f(x):\n    return x +",
        "and explain",
    ]
