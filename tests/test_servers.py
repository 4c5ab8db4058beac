"""What a server does first: other processes of its user (a file reader's child among them) cannot read its memory,
environment or working directory."""

from __future__ import annotations

import subprocess
import sys

PR_GET_DUMPABLE = 3


def dumpable(start: str) -> str:
    query = f"print(ctypes.CDLL(None).prctl({PR_GET_DUMPABLE}, 0, 0, 0, 0))"
    code = f"import ctypes; from pomogator import servers; {start}; {query}"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.strip()


def test_a_server_is_not_dumpable() -> None:
    # /proc/<pid>/environ, mem and cwd of a process that is not dumpable belong to root, whatever its user.
    assert dumpable("pass") == "1"
    assert dumpable("servers.starting_server()") == "0"
