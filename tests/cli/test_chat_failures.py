"""``pomogator chat`` when messages fail: what the operator is told, the exit code of a script, the output left."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.cli.helpers import chat_env, error_line, run_cli
from tests.conftest import TEST_API_KEY
from tests.fakes.openai_server import Error, FakeLLM, MidStreamError, Reply


def closed_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port: int = listener.getsockname()[1]
    return port


async def test_a_refused_api_key_is_named(tmp_path: Path, fake_llm: FakeLLM) -> None:
    env = chat_env(fake_llm.base_url, POMOGATOR_OPENROUTER_API_KEY="sk-or-v1-not-the-right-one")
    result = await run_cli("chat", cwd=tmp_path, env=env, stdin="hi\n")
    assert result.code == 1
    line = error_line(result)
    assert "LLMAccountProblem" in line and "HTTP 401: User not found." in line
    assert "POMOGATOR_OPENROUTER_API_KEY" in line
    assert "not-the-right-one" not in result.stderr


async def test_a_provider_message_quoting_the_key_is_redacted(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(Error(status=402, message=f"Key {TEST_API_KEY} has no credit left"))
    result = await run_cli("chat", cwd=tmp_path, env=chat_env(fake_llm.base_url), stdin="hi\n")
    assert result.code == 1
    line = error_line(result)
    assert "HTTP 402: Key *** has no credit left" in line
    assert TEST_API_KEY not in result.stderr


async def test_a_wrong_base_url_is_named(tmp_path: Path, fake_llm: FakeLLM) -> None:
    url = fake_llm.base_url + "/nope"
    result = await run_cli("chat", cwd=tmp_path, env=chat_env(url), stdin="hi\n")
    assert result.code == 1
    line = error_line(result)
    assert f"from {url}: HTTP 404" in line and "POMOGATOR_OPENROUTER_BASE_URL" in line


@pytest.mark.parametrize(
    ("status", "message"),
    [(404, "No endpoints found for openai/gpt-4o-mini."), (400, "openai/gpt-4o-mini is not a valid model ID")],
)
async def test_a_withdrawn_model_points_to_the_models_not_the_url(
    tmp_path: Path, fake_llm: FakeLLM, status: int, message: str
) -> None:
    fake_llm.enqueue(Error(status=status, message=message))
    result = await run_cli("chat", cwd=tmp_path, env=chat_env(fake_llm.base_url), stdin="hi\n")
    assert result.code == 1
    line = error_line(result)
    assert f"LLMModelGone from {fake_llm.base_url}: HTTP {status}: {message}" in line
    assert line.endswith("Switch with /model ID, or replace the model in POMOGATOR_MODELS_FILE.")
    assert "BASE_URL" not in line


async def test_an_unreachable_host_is_named(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/api/v1"
    result = await run_cli("chat", cwd=tmp_path, env=chat_env(url), stdin="hi\n")
    assert result.code == 1
    line = error_line(result)
    assert f"from {url}: connection: APIConnectionError (ConnectionRefusedError: " in line
    assert "POMOGATOR_OPENROUTER_BASE_URL" in line


async def test_a_base_url_with_a_password_is_named_without_it(tmp_path: Path) -> None:
    url = f"http://proxy:pwSECRET@127.0.0.1:{closed_port()}/api/v1"
    result = await run_cli("chat", cwd=tmp_path, env=chat_env(url), stdin="hi\n")
    assert result.code == 1
    line = error_line(result)
    assert "from http://proxy:***@127.0.0.1:" in line
    assert "ValueError: " in line  # aiohttp refuses credentials in a URL with an Authorization header
    assert "SECRET" not in result.stderr


async def test_an_answer_failing_mid_way_ends_its_line_and_fails_the_script(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(MidStreamError(after_text="Half an answer"), Reply(text="Whole"))
    result = await run_cli("chat", cwd=tmp_path, env=chat_env(fake_llm.base_url), stdin="one\ntwo\n")
    assert result.stdout == "Half an answer\nWhole\n"
    assert "Provider disconnected unexpectedly" in error_line(result)
    # The second message was answered; the script still learns that the first was not.
    assert result.code == 1


async def test_piped_answers_carry_no_control_characters(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(Reply(text="\x1b[31mRED\x1b[0m\ta\x07b\r\nc \x1b]0;title\x07 \x9b2J"))
    result = await run_cli("chat", cwd=tmp_path, env=chat_env(fake_llm.base_url), stdin="hi\n")
    assert result.code == 0, result.stderr
    assert result.stdout == "[31mRED[0m\tab\nc ]0;title 2J\n"


async def test_a_premium_only_model_is_refused_to_a_free_user_before_the_session(
    tmp_path: Path, db_url: str, fake_llm: FakeLLM
) -> None:
    env = chat_env(fake_llm.base_url, POMOGATOR_DATABASE_URL=db_url)
    assert (await run_cli("db", "migrate", cwd=tmp_path, env=env)).code == 0
    assert (await run_cli("user", "grant-premium", "6", "--days", "1", cwd=tmp_path, env=env)).code == 0
    assert (await run_cli("user", "revoke-premium", "6", cwd=tmp_path, env=env)).code == 0

    started = await run_cli("chat", "--user", "6", "--model", "openai/gpt-5", cwd=tmp_path, env=env, stdin="hi\n")
    assert started.code == 1
    assert error_line(started) == "Error: Model openai/gpt-5 is available with premium only."

    # Switching to it within a session is refused too, and the session goes on with the model it had.
    switched = await run_cli("chat", "--user", "6", cwd=tmp_path, env=env, stdin="/model openai/gpt-5\nhi\n")
    assert "premium only" in error_line(switched)
    assert switched.code == 1
    assert [request.model for request in fake_llm.requests] == ["openai/gpt-4o-mini"]


async def test_a_message_too_long_for_the_model_says_what_helps(tmp_path: Path, fake_llm: FakeLLM) -> None:
    models = tmp_path / "models.toml"
    models.write_text(
        'default = "test/short"\n\n[[models]]\nid = "test/short"\nfree_daily = 5\npremium_daily = 10\n'
        "context_length = 700\nmax_output_tokens = 100\n",
        "utf-8",
    )
    env = chat_env(fake_llm.base_url, POMOGATOR_MODELS_FILE=str(models))
    result = await run_cli("chat", cwd=tmp_path, env=env, stdin="word " * 600 + "\n")
    assert result.code == 1
    line = error_line(result)
    assert "too long for test/short" in line and line.endswith("switch with /model ID.")
    # Refused before anything was sent: nothing names the provider.
    assert fake_llm.base_url not in line and "HTTP" not in line
    assert fake_llm.request_count == 0
