"""Run the real ``pomogator`` console script with its output on a pseudo-terminal of a given width: what an
operator at an 80-column terminal sees (rich tables, colours), not the tab-separated lines of a pipe."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import struct
import termios
from pathlib import Path

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
