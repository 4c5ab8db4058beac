"""``pomogator chat`` in a terminal of a given size: what the person at it sees of an answer, and what it takes
as one message."""

from __future__ import annotations

import os
import pty
import sys
import termios
import threading
from pathlib import Path

import pytest

from pomogator import terminal_chat
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
    """A terminal without bracketed paste: the lines that reach the chat at once."""
    env = clean_env(POMOGATOR_OPENROUTER_API_KEY=TEST_API_KEY, POMOGATOR_OPENROUTER_BASE_URL=fake_llm.base_url)
    terminal = await ChatTerminal.start(tmp_path, env)
    await terminal.wait_for(b"you> ")
    terminal.type(b"Fix this:\ndef f(x):\n    return x +\n")  # a paste: the terminal gets the lines at once
    await terminal.wait_for(b"you> ", count=2)
    terminal.type(b"and explain\n")  # typed after the answer: a message of its own
    await terminal.wait_for(b"you> ", count=3)
    assert await terminal.end() == 0
    assert questions(fake_llm) == ["Fix this:\ndef f(x):\n    return x +", "and explain"]


def questions(fake_llm: FakeLLM) -> list[str]:
    return [request.messages[-1]["content"] for request in fake_llm.requests]


async def test_a_paste_is_one_message_sent_with_the_enter_after_it(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """A paste's last line without a newline stayed in the terminal and went out later as a message of its own."""
    env = clean_env(POMOGATOR_OPENROUTER_API_KEY=TEST_API_KEY, POMOGATOR_OPENROUTER_BASE_URL=fake_llm.base_url)
    terminal = await ChatTerminal.start(tmp_path, env)
    await terminal.wait_for(b"you> ")
    # A paste as a terminal sends it (Enter as CR), then a Backspace into its last line, and Enter.
    terminal.type(b"\x1b[200~Fix this:\rdef f(x):\r    return x +\x1b[201~")
    await terminal.wait_for(b"return x +")
    terminal.type(b"\x7f* 2\r")
    await terminal.wait_for(b"you> ", count=2)
    assert await terminal.end() == 0
    assert questions(fake_llm) == ["Fix this:\ndef f(x):\n    return x * 2"]
    # Bracketed paste was on: the terminal marks where a paste starts and ends.
    assert b"\x1b[?2004h" in terminal.output
    # The paste's marks were not shown, as "^[[200~" or at all.
    assert b"200~" not in terminal.output and b"201~" not in terminal.output
    assert terminal.output.endswith(b"\x1b[?2004l")
    assert terminal.modes_after == terminal.modes


async def test_a_paste_ending_a_line_goes_on_until_enter(tmp_path: Path, fake_llm: FakeLLM) -> None:
    env = clean_env(POMOGATOR_OPENROUTER_API_KEY=TEST_API_KEY, POMOGATOR_OPENROUTER_BASE_URL=fake_llm.base_url)
    terminal = await ChatTerminal.start(tmp_path, env)
    await terminal.wait_for(b"you> ")
    terminal.type(b"Look: \x1b[200~a\tb\rc\r\x1b[201~")
    await terminal.wait_for(b"...> ")
    terminal.type(b"explain this\r")
    await terminal.wait_for(b"you> ", count=2)
    assert await terminal.end() == 0
    assert questions(fake_llm) == ["Look: a\tb\nc\nexplain this"]


def test_the_terminal_is_put_back_when_the_chat_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error at the prompt: bracketed paste goes off and the terminal's modes come back (no echo otherwise)."""
    controller, device = pty.openpty()
    modes = termios.tcgetattr(device)
    with open(device, "w", closefd=False) as out, open(device, closefd=False) as into:
        monkeypatch.setattr(sys, "stdin", into)
        monkeypatch.setattr(sys, "stderr", out)
        with pytest.raises(RuntimeError), terminal_chat._terminal_session() as editor:
            assert editor is not None
            reader = threading.Thread(target=editor.read_line, args=("you> ",), daemon=True)
            reader.start()
            for _ in range(1000):  # until the editor has taken the terminal over
                if termios.tcgetattr(device) != modes:
                    break
                reader.join(0.01)
            assert termios.tcgetattr(device) != modes
            raise RuntimeError("failed")
        assert termios.tcgetattr(device) == modes
        os.write(controller, b"\n")  # the reader has its line
        reader.join(10)
    assert termios.tcgetattr(device) == modes
    assert os.read(controller, 1000).startswith(b"\x1b[?2004hyou> \x1b[?2004l")
    os.close(device)
    os.close(controller)
