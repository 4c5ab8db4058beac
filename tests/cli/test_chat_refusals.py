"""``pomogator chat`` when the model answers with nothing or is refused in the country the requests come from: what
the operator is told."""

from __future__ import annotations

from pathlib import Path

from tests.cli.helpers import chat_env, error_line, run_cli
from tests.fakes.openai_server import Error, FakeLLM, Reply


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
