"""Run the real ``pomogator`` console script in a subprocess, without blocking the test's event loop."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import TEST_API_KEY

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


def chat_env(base_url: str, **values: str) -> dict[str, str]:
    # No retries: each failure is one request.
    values = {"POMOGATOR_OPENROUTER_API_KEY": TEST_API_KEY, "POMOGATOR_OPENROUTER_MAX_RETRIES": "0", **values}
    return clean_env(POMOGATOR_OPENROUTER_BASE_URL=base_url, **values)


def error_line(result: Result) -> str:
    """The only line on stderr, checked to be an error and no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]
