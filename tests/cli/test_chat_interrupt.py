"""``pomogator chat`` at a terminal: Ctrl-C ends it at once, at the prompt or during an answer, with exit code 130."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import signal
from pathlib import Path

from tests.cli.helpers import POMOGATOR, clean_env
from tests.conftest import TEST_API_KEY
from tests.fakes.openai_server import FakeLLM, Reply


class Terminal:
    """``pomogator chat`` with a pseudo-terminal as its stdin, stdout and stderr."""

    def __init__(self, process: asyncio.subprocess.Process, master: int) -> None:
        self.process = process
        self.master = master
        self.output = b""

    @classmethod
    async def start(cls, cwd: Path, env: dict[str, str]) -> Terminal:
        master, slave = pty.openpty()
        process = await asyncio.create_subprocess_exec(
            POMOGATOR, "chat", cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave
        )
        os.close(slave)
        os.set_blocking(master, False)
        return cls(process, master)

    async def wait_for(self, text: bytes, seconds: float = 30.0) -> None:
        for _ in range(int(seconds * 20)):
            with contextlib.suppress(BlockingIOError, OSError):
                self.output += os.read(self.master, 65536)
            if text in self.output:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{text!r} not shown; the terminal shows {self.output[-500:]!r}")

    async def interrupt(self) -> int:
        """Ctrl-C: SIGINT, as the terminal sends it; returns the exit code (the chat must end within 10 s)."""
        self.process.send_signal(signal.SIGINT)
        try:
            return await asyncio.wait_for(self.process.wait(), 10)
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            os.close(self.master)


def chat_env(fake_llm: FakeLLM) -> dict[str, str]:
    return clean_env(POMOGATOR_OPENROUTER_API_KEY=TEST_API_KEY, POMOGATOR_OPENROUTER_BASE_URL=fake_llm.base_url)


async def test_ctrl_c_at_the_prompt_ends_the_chat(tmp_path: Path, fake_llm: FakeLLM) -> None:
    terminal = await Terminal.start(tmp_path, chat_env(fake_llm))
    await terminal.wait_for(b"you> ")
    assert await terminal.interrupt() == 130
    assert b"Traceback" not in terminal.output


async def test_ctrl_c_during_an_answer_ends_the_chat(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(Reply.slow(50, 20.0))
    terminal = await Terminal.start(tmp_path, chat_env(fake_llm))
    await terminal.wait_for(b"you> ")
    os.write(terminal.master, b"hello\n")
    await terminal.wait_for(b"tok1")
    assert await terminal.interrupt() == 130
    assert b"Traceback" not in terminal.output
