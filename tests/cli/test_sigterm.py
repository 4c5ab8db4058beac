"""SIGTERM ends every command (exit code 143), also as a container's first process, where Python ignores a SIGTERM
it has no handler for: `docker stop` of a one-off command waited for its SIGKILL."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.cli.helpers import POMOGATOR, clean_env
from tests.cli.test_logs import HEADER, add_logs

FOLLOW = ("logs", "tail", "--follow", "--interval", "0.1")


async def following(*program: str, cwd: Path, db_url: str) -> asyncio.subprocess.Process:
    """`pomogator logs tail --follow` (under ``program``), once it has printed the stored record."""
    await add_logs(db_url, "before")
    process = await asyncio.create_subprocess_exec(
        *program,
        POMOGATOR,
        *FOLLOW,
        cwd=cwd,
        env=clean_env(POMOGATOR_DATABASE_URL=db_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        assert await asyncio.wait_for(process.stdout.readline(), 30) == HEADER.encode()
        assert (await asyncio.wait_for(process.stdout.readline(), 30)).rstrip().endswith(b"before")
    except BaseException:
        process.kill()
        await process.wait()
        raise
    return process


def first_process_of(unshare_pid: int) -> int:
    """The (host's) PID of the one child of ``unshare --fork``, checked to be PID 1 in its namespace."""
    (child,) = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
    (pids,) = [line for line in Path(f"/proc/{child}/status").read_text().splitlines() if line.startswith("NSpid:")]
    assert pids.split()[-1] == "1"
    return int(child)


async def test_sigterm_ends_a_one_off_command_with_143(tmp_path: Path, db_url: str) -> None:
    process = await following(cwd=tmp_path, db_url=db_url)
    process.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 143, err.decode()  # not -15: the handler ran, and `finally` blocks with it
    assert err == b""


async def test_sigterm_ends_a_one_off_command_running_as_the_first_process(tmp_path: Path, db_url: str) -> None:
    """As in a container without an init: the command is PID 1 of a PID namespace of its own."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare(1)")
    probe = await asyncio.create_subprocess_exec(
        unshare, "--pid", "--fork", "true", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    if await probe.wait() != 0:
        pytest.skip("no permission to make a PID namespace")
    process = await following(unshare, "--pid", "--fork", "--kill-child", cwd=tmp_path, db_url=db_url)
    try:
        os.kill(first_process_of(process.pid), signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 143, err.decode()
