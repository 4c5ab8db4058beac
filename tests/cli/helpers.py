"""Run the real ``pomogator`` console script in a subprocess, without blocking the test's event loop."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

POMOGATOR = str(Path(sys.executable).with_name("pomogator"))


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POMOGATOR_")}
    env.update(overrides)
    return env


async def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str],
    stdin: str | bytes = "",
    limit_s: float = 60.0,
    program: str = POMOGATOR,
) -> Result:
    process = await asyncio.create_subprocess_exec(
        program,
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    data = stdin.encode() if isinstance(stdin, str) else stdin
    out, err = await asyncio.wait_for(process.communicate(data), limit_s)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())
