"""``pomogator chat`` at a terminal: Ctrl-C during an answer stops that answer and the chat goes on with what it
wrote; Ctrl-C at the prompt ends the chat with exit code 130, Ctrl-D with 0 and the prompt's line ended."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
from pathlib import Path

from tests.cli.helpers import clean_env
from tests.cli.terminal import ChatTerminal, Screen
from tests.conftest import TEST_API_KEY
from tests.fakes.openai_server import FakeLLM, Reply


def chat_env(fake_llm: FakeLLM) -> dict[str, str]:
    return clean_env(POMOGATOR_OPENROUTER_API_KEY=TEST_API_KEY, POMOGATOR_OPENROUTER_BASE_URL=fake_llm.base_url)


def request_rows(folder: Path) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(folder / "pomogator.sqlite3")) as db:
        return db.execute("SELECT telegram_id, status FROM llm_requests ORDER BY id").fetchall()


async def test_ctrl_c_at_the_prompt_ends_the_chat(tmp_path: Path, fake_llm: FakeLLM) -> None:
    terminal = await ChatTerminal.start(tmp_path, chat_env(fake_llm))
    await terminal.wait_for(b"you> ")
    assert await terminal.interrupt() == 130
    assert b"Traceback" not in terminal.output
    # The terminal is as it was: bracketed paste off, the modes of the chat's line editing undone.
    assert terminal.output.endswith(b"\x1b[?2004l")
    assert terminal.modes_after == terminal.modes


async def test_ctrl_c_during_an_answer_stops_it_and_the_chat_goes_on(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(Reply.slow(50, 20.0), Reply(text="Second answer"))
    terminal = await ChatTerminal.start(tmp_path, chat_env(fake_llm))
    await terminal.wait_for(b"you> ")
    terminal.type(b"hello\n")
    await terminal.wait_for(b"tok1")
    terminal.process.send_signal(signal.SIGINT)
    await terminal.wait_for(b"Answer stopped: what it wrote stays in the context.")
    await terminal.wait_for(b"you> ", count=2)
    assert terminal.process.returncode is None

    terminal.type(b"go on\n")
    await terminal.wait_for(b"Second answer")
    await terminal.wait_for(b"you> ", count=3)
    # The next question carries the stopped answer's text in its context, as in the bot after Stop.
    context = fake_llm.requests[1].messages
    assert [m["role"] for m in context] == ["user", "assistant", "user"]
    partial = context[1]["content"]
    assert partial.startswith("tok0 tok1") and "tok49" not in partial
    assert await terminal.interrupt() == 130
    assert b"Traceback" not in terminal.output
    # The model was paid for what it wrote: the stopped request is in `pomogator usage`.
    assert request_rows(tmp_path) == [(None, "stopped"), (None, "ok")]


async def test_an_answer_stopped_with_ctrl_c_shows_once(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """The terminal's "^C" echo came while the answer's preview filled its line: the preview went a line down, and
    a copy of its first line stayed above the answer."""
    fake_llm.enqueue(Reply.slow(60, 6.0))
    terminal = await ChatTerminal.start(tmp_path, chat_env(fake_llm), columns=80, rows=24, keep_output_on_ctrl_c=True)
    await terminal.wait_for(b"you> ")
    terminal.type(b"hello\r")
    await terminal.wait_for(b"tok12")
    terminal.type(b"\x03")  # Ctrl-C, typed: the terminal echoes it and interrupts the chat
    await terminal.wait_for(b"Answer stopped: what it wrote stays in the context.")
    await terminal.wait_for(b"you> ", count=2)
    assert await terminal.end() == 0
    lines = Screen(terminal.output, 80).lines
    answer = [line for line in lines if line.startswith("tok0 tok1")]
    assert len(answer) == 1, lines
    assert lines[lines.index(answer[0]) + 1] == "(Answer stopped: what it wrote stays in the context.)"
    assert terminal.modes_after == terminal.modes  # the echo of control keys is back


async def test_ctrl_d_at_the_prompt_ends_the_chat_on_a_line_of_its_own(tmp_path: Path, fake_llm: FakeLLM) -> None:
    terminal = await ChatTerminal.start(tmp_path, chat_env(fake_llm))
    await terminal.wait_for(b"you> ")
    assert await terminal.end() == 0
    # The shell's prompt that follows starts a line instead of following "you> ".
    assert terminal.output.endswith(b"you> \r\n\x1b[?2004l")
    assert terminal.modes_after == terminal.modes


async def test_ctrl_d_after_text_sends_it_and_the_answer_starts_a_line(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """Ctrl-D sends what was typed, on the prompt's line or before a continuation prompt, and the chat goes on; the
    answer used to start right after the typed text ("you> abcEcho:")."""
    terminal = await ChatTerminal.start(tmp_path, chat_env(fake_llm), columns=80, rows=24)
    await terminal.wait_for(b"you> ")
    terminal.type(b"abc")
    await terminal.wait_for(b"abc")
    terminal.type(b"\x04")
    await terminal.wait_for(b"you> ", count=2)
    terminal.type(b"first\\\r")
    await terminal.wait_for(b"...> ")
    terminal.type(b"\x04")
    await terminal.wait_for(b"you> ", count=3)
    assert await terminal.end() == 0
    assert [request.messages[-1]["content"] for request in fake_llm.requests] == ["abc", "first"]
    lines = Screen(terminal.output, 80).lines
    start = lines.index("you> abc")
    assert lines[start:] == ["you> abc", "Echo: abc", "you> first\\", "...>", "Echo: first", "you>", ""]
