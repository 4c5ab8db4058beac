"""``pomogator chat`` keeps the libraries' log records out of the conversation unless the operator asks for them."""

from __future__ import annotations

from pathlib import Path

from tests.cli.helpers import chat_env, error_line, run_cli
from tests.cli.test_chat_failures import closed_port


async def test_records_below_warning_are_shown_only_when_asked_for(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/api/v1"
    env = chat_env(url, POMOGATOR_OPENROUTER_MAX_RETRIES="1")
    quiet = await run_cli("chat", cwd=tmp_path, env=env, stdin="hi\n")
    assert quiet.code == 1
    # The only line is the failure: no "Retrying request in 0.4 seconds" from the SDK before it.
    assert "ConnectionRefusedError" in error_line(quiet)

    verbose = await run_cli("chat", cwd=tmp_path, env=env | {"POMOGATOR_LOG_LEVEL": "INFO"}, stdin="hi\n")
    assert verbose.code == 1
    assert "Retrying request" in verbose.stderr
