"""Run the real ``pomogator`` console script with its output on a pseudo-terminal of a given width: what an
operator at an 80-column terminal sees (rich tables, colours), not the tab-separated lines of a pipe."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import re
import signal
import struct
import termios
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.cli.helpers import POMOGATOR, Result

# Colour on, whatever the environment running the tests says.
TERMINAL_ENV = {"TERM": "xterm-256color", "COLORTERM": "truecolor"}
NO_COLOUR_ENV = ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


def _read_until_closed(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every process holding the terminal has exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


async def run_in_terminal(
    *args: str, cwd: Path, env: dict[str, str], columns: int = 80, limit_s: float = 60.0
) -> Result:
    """Run ``pomogator *args`` with stdout on a terminal ``columns`` wide (stdin empty, stderr piped); the
    result's stdout is what the terminal showed, with ``\\n`` line ends."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in env.items() if k not in NO_COLOUR_ENV} | TERMINAL_ENV | {"COLUMNS": str(columns)}
    try:
        process = await asyncio.create_subprocess_exec(
            POMOGATOR,
            *args,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=terminal,
            stderr=asyncio.subprocess.PIPE,
        )
    finally:
        os.close(terminal)
    reader = asyncio.ensure_future(asyncio.to_thread(_read_until_closed, controller))
    try:
        _, err = await asyncio.wait_for(process.communicate(), limit_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    finally:
        # The reader stops once the process, the terminal's last holder, has exited.
        screen = await reader
        os.close(controller)
    assert process.returncode is not None
    return Result(process.returncode, screen.decode().replace("\r\n", "\n"), err.decode())


def _take_terminal() -> None:
    """In the child, a session leader after ``start_new_session``: its stdin becomes its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class ChatTerminal:
    """``pomogator chat`` with a pseudo-terminal (``columns`` x ``rows`` when given) as its stdin, stdout, stderr.

    ``modes`` and ``modes_after`` are the terminal's termios modes before the chat started and after it exited.
    """

    def __init__(self, process: asyncio.subprocess.Process, master: int, device: str, modes: list[Any]) -> None:
        self.process = process
        self.master = master
        self.device = device
        self.output = b""
        self.modes = modes
        self.modes_after: list[Any] = []

    @classmethod
    async def start(
        cls,
        cwd: Path,
        env: dict[str, str],
        *,
        columns: int | None = None,
        rows: int | None = None,
        keep_output_on_ctrl_c: bool = False,
        args: Sequence[str] = ("chat",),
    ) -> ChatTerminal:
        """The terminal is the chat's controlling terminal: a Ctrl-C typed on it interrupts the chat, as at a real
        one. ``keep_output_on_ctrl_c`` (NOFLSH): what the chat wrote and the test has not read yet stays. ``args``:
        another command than ``chat`` to run at the terminal (one that asks a question)."""
        master, slave = pty.openpty()
        if columns is not None and rows is not None:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        if keep_output_on_ctrl_c:
            modes = termios.tcgetattr(slave)
            modes[3] |= termios.NOFLSH
            termios.tcsetattr(slave, termios.TCSANOW, modes)
        device, modes = os.ttyname(slave), termios.tcgetattr(slave)
        process = await asyncio.create_subprocess_exec(
            POMOGATOR,
            *args,
            cwd=cwd,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
        os.close(slave)
        os.set_blocking(master, False)
        return cls(process, master, device, modes)

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
        return await self._exit_code()

    async def interrupt(self) -> int:
        """Ctrl-C: SIGINT, as the terminal sends it; returns the exit code (the chat must end within 10 s)."""
        self.process.send_signal(signal.SIGINT)
        return await self._exit_code()

    async def exited(self) -> int:
        """The exit code of a command that ends by itself (within 10 s)."""
        return await self._exit_code()

    async def _exit_code(self) -> int:
        try:
            return await asyncio.wait_for(self.process.wait(), 10)
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            self.modes_after = self._modes()
            # What the chat wrote last, until the terminal reports that nobody holds it any more.
            os.set_blocking(self.master, True)
            self.output += _read_until_closed(self.master)
            os.close(self.master)

    def _modes(self) -> list[Any]:
        # Opened anew: the terminal reports its end (EIO) once nobody holds it, which a held descriptor would stop.
        fd = os.open(self.device, os.O_RDWR | os.O_NOCTTY)
        try:
            return termios.tcgetattr(fd)
        finally:
            os.close(fd)


# What a terminal does with the chat's output, as far as rich's Live display and the prompt go: CSI sequences (cursor
# up/down/forward/back, to a column, erase in line), OSC strings, CR, LF, backspace.
_CONTROL = re.compile(r"\x1b\[([0-9;?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b.|[\x00-\x1f\x7f]")


class Screen:
    """What a terminal ``columns`` wide shows of ``output``, as lines without their trailing blanks. Lines
    scrolled off the top stay (an unlimited screen), and, as at a real terminal, a character written in the last
    column leaves the cursor there until the next one goes onto a new line."""

    def __init__(self, output: bytes, columns: int) -> None:
        self.columns = columns
        self.rows: list[list[str]] = [[]]
        self.row = self.column = 0
        self.wrap = False
        text = output.decode(errors="replace")
        start = 0
        for control in _CONTROL.finditer(text):
            self._write(text[start : control.start()])
            self._control(control)
            start = control.end()
        self._write(text[start:])

    @property
    def lines(self) -> list[str]:
        return ["".join(row).rstrip() for row in self.rows]

    def _write(self, text: str) -> None:
        for char in text:
            if self.wrap:
                self._move(self.row + 1, 0)
            line = self.rows[self.row]
            line.extend(" " * (self.column + 1 - len(line)))
            line[self.column] = char
            if self.column == self.columns - 1:
                self.wrap = True
            else:
                self.column += 1

    def _move(self, row: int, column: int) -> None:
        self.row, self.column, self.wrap = max(row, 0), min(max(column, 0), self.columns - 1), False
        self.rows.extend([] for _ in range(self.row + 1 - len(self.rows)))

    def _control(self, control: re.Match[str]) -> None:
        sequence, parameters, final = control.group(), control.group(1) or "", control.group(2)
        count = int(parameters) if parameters.isdigit() else 1
        if sequence == "\r":
            self._move(self.row, 0)
        elif sequence == "\n":
            self._move(self.row + 1, self.column)
        elif sequence == "\b":
            self._move(self.row, self.column - 1)
        elif final in ("A", "B"):
            self._move(self.row + (count if final == "B" else -count), self.column)
        elif final in ("C", "D"):
            self._move(self.row, self.column + (count if final == "C" else -count))
        elif final == "G":
            self._move(self.row, count - 1)
        elif final == "K":
            line = self.rows[self.row]
            if parameters in ("", "0"):
                del line[self.column :]
            elif parameters == "2":
                line.clear()
            else:
                line[: self.column + 1] = " " * min(self.column + 1, len(line))
