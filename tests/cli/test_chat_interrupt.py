"""``pomogator chat`` at a terminal: Ctrl-C ends it at once, at the prompt or during an answer, with exit code 130."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from tests.cli.helpers import clean_env
from tests.cli.terminal import ChatTerminal
from tests.conftest import TEST_API_KEY
from tests.fakes.openai_server import FakeLLM, Reply


def chat_env(fake_llm: FakeLLM) -> dict[str, str]:
    return clean_env(POMOGATOR_OPENROUTER_API_KEY=TEST_API_KEY, POMOGATOR_OPENROUTER_BASE_URL=fake_llm.base_url)


async def test_ctrl_c_at_the_prompt_ends_the_chat(tmp_path: Path, fake_llm: FakeLLM) -> None:
    terminal = await ChatTerminal.start(tmp_path, chat_env(fake_llm))
    await terminal.wait_for(b"you> ")
    assert await terminal.interrupt() == 130
    assert b"Traceback" not in terminal.output


async def test_ctrl_c_during_an_answer_ends_the_chat(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(Reply.slow(50, 20.0))
    terminal = await ChatTerminal.start(tmp_path, chat_env(fake_llm))
    await terminal.wait_for(b"you> ")
    terminal.type(b"hello\n")
    await terminal.wait_for(b"tok1")
    assert await terminal.interrupt() == 130
    assert b"Traceback" not in terminal.output
    # The model was paid for what it wrote: the request is in `pomogator usage`, as stopped.
    with contextlib.closing(sqlite3.connect(tmp_path / "pomogator.sqlite3")) as db:
        assert db.execute("SELECT telegram_id, status FROM llm_requests").fetchall() == [(None, "stopped")]
