"""What ``pomogator chat`` takes as one message, and what as a command, from a script's stdin."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import Result, clean_env, run_cli
from tests.conftest import TEST_API_KEY
from tests.fakes.openai_server import FakeLLM


async def chat(folder: Path, fake_llm: FakeLLM, stdin: str | bytes, **variables: str) -> Result:
    env = clean_env(
        POMOGATOR_OPENROUTER_API_KEY=TEST_API_KEY, POMOGATOR_OPENROUTER_BASE_URL=fake_llm.base_url, **variables
    )
    return await run_cli("chat", cwd=folder, env=env, stdin=stdin)


def questions(fake_llm: FakeLLM) -> list[str]:
    return [request.messages[-1]["content"] for request in fake_llm.requests]


async def test_each_line_is_a_message_unless_a_backslash_goes_on(tmp_path: Path, fake_llm: FakeLLM) -> None:
    result = await chat(tmp_path, fake_llm, "first\ndef f(x):\\\n    return x\\\n\nlast\n")
    assert result.code == 0, result.stderr
    assert questions(fake_llm) == ["first", "def f(x):\n    return x", "last"]


async def test_a_text_starting_with_a_slash_is_a_question(tmp_path: Path, fake_llm: FakeLLM) -> None:
    result = await chat(tmp_path, fake_llm, "/etc/hosts — что это?\n/usr/bin is full\n/clear\\\nthe rest\n")
    assert result.code == 0, result.stderr
    assert questions(fake_llm) == ["/etc/hosts — что это?", "/usr/bin is full", "/clear\nthe rest"]
    assert result.stdout == "Echo: /etc/hosts — что это?\nEcho: /usr/bin is full\nEcho: /clear\nthe rest\n"
    assert "Commands:" not in result.stderr


async def test_only_the_chats_commands_are_commands(tmp_path: Path, fake_llm: FakeLLM) -> None:
    result = await chat(tmp_path, fake_llm, "/xyz\n/help\n/HELP\nhi\n/exit\nnot read\n")
    assert result.code == 0, result.stderr
    assert questions(fake_llm) == ["hi"]
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Unknown command /xyz. Commands: /clear resets the context")
    assert lines[1].startswith("Commands: /clear") and "A line ending in \\ goes on in the next one" in lines[1]
    assert lines[2] == lines[1]
    assert len(lines) == 3


@pytest.mark.parametrize(
    "decoding",
    [
        "utf-8:strict",  # a UTF-8 locale such as ru_RU.UTF-8
        "utf-8:surrogateescape",  # C.UTF-8, the image's
    ],
)
async def test_input_that_is_not_utf8_is_said_to_be_so(tmp_path: Path, fake_llm: FakeLLM, decoding: str) -> None:
    """A Windows-1251 file piped in was taken for the end of the input (nothing sent, exit 0), or sent on to fail
    as "the model is unavailable"."""
    result = await chat(tmp_path, fake_llm, "привет\n".encode("cp1251"), PYTHONIOENCODING=decoding)
    assert result.code == 1
    assert "The input is not UTF-8 text" in result.stderr and "iconv -f cp1251" in result.stderr
    assert fake_llm.request_count == 0
