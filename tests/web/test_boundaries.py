"""The web process and the CLI never import aiogram; plain CLI commands do not import the yookassa SDK either."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import pomogator.cli, pomogator.container, pomogator.commands.payments
loaded_by_cli = {m.split(".")[0] for m in sys.modules}
import pomogator.web.app, pomogator.web.server, pomogator.billing.yookassa
loaded_by_web = {m.split(".")[0] for m in sys.modules}
print(sorted(loaded_by_cli & {"aiogram", "yookassa", "uvicorn", "starlette"}))
print(sorted(loaded_by_web & {"aiogram"}))
"""


def test_web_and_cli_imports() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    cli_line, web_line = result.stdout.splitlines()
    assert cli_line == "[]"
    assert web_line == "[]"
