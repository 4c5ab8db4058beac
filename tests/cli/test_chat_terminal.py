"""``pomogator chat`` in a terminal of a given size: what the person at it sees of an answer."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import struct
import termios
from pathlib import Path

from tests.cli.helpers import POMOGATOR, clean_env
from tests.conftest import TEST_API_KEY
from tests.fakes.openai_server import FakeLLM, Reply


class Terminal:
    """``pomogator chat`` with a pseudo-terminal of ``columns`` x ``rows`` as its stdin, stdout and stderr."""

    def __init__(self, process: asyncio.subprocess.Process, master: int) -> None:
        self.process = process
        self.master = master
        self.output = b""

    @classmethod
    async def start(cls, cwd: Path, env: dict[str, str], *, columns: int, rows: int) -> Terminal:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        process = await asyncio.create_subprocess_exec(
            POMOGATOR, "chat", cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave
        )
        os.close(slave)
        os.set_blocking(master, False)
        return cls(process, master)

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    async def wait_for(self, text: bytes, *, count: int = 1, seconds: float = 30.0) -> None:
        for _ in range(int(seconds * 20)):
            with contextlib.suppress(BlockingIOError, OSError):
                self.output += os.read(self.master, 65536)
            if self.output.count(text) >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{text!r} not shown; the terminal shows {self.output[-500:]!r}")

    async def end(self) -> int:
        """Ctrl-D at the prompt; returns the exit code."""
        self.type(b"\x04")
        try:
            return await asyncio.wait_for(self.process.wait(), 10)
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            os.close(self.master)


async def test_an_answer_shows_whole_at_the_terminal_width(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """Lines wrap instead of being cut at the width, HTML-like text shows, the model's escape codes do not."""
    paragraph = " ".join(f"word{number}" for number in range(40)) + " paragraph-end"
    fake_llm.enqueue(
        Reply(text=f"{paragraph}\n\nA Vec<String> or List<T>, \x1b[31mRED\x1b[0m and \x1b]0;owned\x07 answer-end")
    )
    env = clean_env(POMOGATOR_OPENROUTER_API_KEY=TEST_API_KEY, POMOGATOR_OPENROUTER_BASE_URL=fake_llm.base_url)
    terminal = await Terminal.start(tmp_path, env, columns=40, rows=12)
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
