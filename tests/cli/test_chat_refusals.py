"""``pomogator chat`` when the model answers with nothing or is refused in the country the requests come from: what
the operator is told."""

from __future__ import annotations

from pathlib import Path

from tests.cli.helpers import Result, clean_env, run_cli
from tests.conftest import TEST_API_KEY
from tests.fakes.openai_server import Error, FakeLLM, Reply


def chat_env(base_url: str) -> dict[str, str]:
    # No retries: each failure is one request.
    values = {"POMOGATOR_OPENROUTER_API_KEY": TEST_API_KEY, "POMOGATOR_OPENROUTER_MAX_RETRIES": "0"}
    return clean_env(POMOGATOR_OPENROUTER_BASE_URL=base_url, **values)


def error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


async def test_an_empty_answer_is_told_as_such_not_as_a_provider_failure(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(Reply(text=""))
    result = await run_cli("chat", cwd=tmp_path, env=chat_env(fake_llm.base_url), stdin="hi\n")
    assert result.code == 1
    line = error_line(result)
    assert (
        line
        == "Error: The model returned an empty answer. Try rephrasing the question. [empty answer, finish_reason=stop]"
    )


async def test_a_region_refusal_says_what_helps(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(Error(status=403, message="This model is not available in your region."))
    result = await run_cli("chat", cwd=tmp_path, env=chat_env(fake_llm.base_url), stdin="hi\n")
    assert result.code == 1
    line = error_line(result)
    assert f"LLMRegionBlocked from {fake_llm.base_url}: HTTP 403: This model is not available in your region." in line
    assert "/model ID" in line and "HTTPS_PROXY" in line
    assert "moderation" not in line
