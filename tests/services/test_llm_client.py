"""The OpenRouter client on its own: stream events, usage, retries and the mapping of failures to domain errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from loguru import logger

from pomogator.errors import (
    LLMAccountProblem,
    LLMBadRequest,
    LLMError,
    LLMModelGone,
    LLMModerated,
    LLMRateLimited,
    LLMRegionBlocked,
    LLMTimeout,
    LLMUnavailable,
)
from pomogator.llm.client import (
    Delta,
    Finished,
    LLMClient,
    StreamEvent,
    TextComplete,
    Usage,
    _sse_data,
    error_for_status,
    translate,
)
from pomogator.llm.transport import _proxy_from_environment
from tests.conftest import TEST_API_KEY
from tests.fakes import openai_server as fake
from tests.fakes.openai_server import FakeLLM

MODEL = "openai/gpt-4o-mini"
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "hello there"}]

# OpenRouter's refusals as it words them (its 403s share the status with moderation, its 404s the "No endpoints found"
# prefix with a withdrawn model).
KEY_LIMIT = "Key limit exceeded (total limit). Manage it using https://openrouter.ai/settings/keys"
REGION = "This model is not available in your region."
# A provider's refusal that OpenRouter passes on in ``metadata.raw``.
UPSTREAM_REGION = {
    "raw": json.dumps(
        {
            "error": {
                "code": "unsupported_country_region_territory",
                "message": "Country, region, or territory not supported",
                "param": None,
                "type": "request_forbidden",
            }
        }
    ),
    "provider_name": "OpenAI",
}
GOOGLE_REGION = {
    "raw": '{"error": {"code": 400, "message": "User location is not supported for the API use.", '
    '"status": "FAILED_PRECONDITION"}}',
    "provider_name": "Google AI Studio",
}
DATA_POLICY = (
    "No endpoints found matching your data policy (Free model publication). "
    "Configure: https://openrouter.ai/settings/privacy"
)
FREE_DAILY = "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model requests per day"


@pytest.fixture
async def client(fake_llm: FakeLLM) -> AsyncIterator[LLMClient]:
    llm = make_client(fake_llm, max_retries=0)
    yield llm
    await llm.close()


def make_client(fake_llm: FakeLLM, **overrides: Any) -> LLMClient:
    options: dict[str, Any] = {
        "base_url": fake_llm.base_url,
        "api_key": TEST_API_KEY,
        "timeout": 10.0,
        "max_retries": 0,
        "app_url": "https://example.org/app",
        "app_title": "Title",
    }
    options.update(overrides)
    return LLMClient(**options)


async def collect(client: LLMClient, max_tokens: int = 100) -> list[StreamEvent]:
    return [event async for event in client.stream(MODEL, MESSAGES, max_tokens)]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, Delta))


async def test_stream_yields_deltas_then_one_finished(client: LLMClient, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(fake.Reply(text="one two three", prompt_tokens=7, completion_tokens=3, cost=0.5))
    events = await collect(client, max_tokens=123)
    assert [e.text for e in events if isinstance(e, Delta)] == ["one", " two", " three"]
    assert isinstance(events[-1], Finished)
    assert sum(isinstance(e, Finished) for e in events) == 1
    finished = events[-1]
    assert finished.finish_reason == "stop"
    assert (finished.usage.prompt_tokens, finished.usage.completion_tokens) == (7, 3)
    assert finished.usage.cost == Decimal("0.5")

    request = fake_llm.requests[-1]
    assert request.model == MODEL
    assert request.max_tokens == 123
    assert request.stream
    assert request.wants_usage
    assert request.json["usage"] == {"include": True}
    assert request.headers["HTTP-Referer"] == "https://example.org/app"
    assert request.headers["X-Title"] == "Title"
    # The body is encoded by the client, not the SDK: still declared as JSON, which OpenRouter requires.
    assert request.headers["Content-Type"] == "application/json"
    assert request.json["messages"] == MESSAGES


async def test_finish_reason_and_chunks_pass_through(client: LLMClient, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(fake.Reply(text="a b c d e", finish_reason="length", chunk_size=2))
    events = await collect(client)
    assert text_of(events) == "a b c d e"
    assert [e.text for e in events if isinstance(e, Delta)] == ["a b", " c d", " e"]
    assert isinstance(events[-1], Finished)
    assert events[-1].finish_reason == "length"


async def test_the_text_is_complete_once_a_choice_says_why_it_ended(client: LLMClient, fake_llm: FakeLLM) -> None:
    # The fake sends the finish_reason chunk, then the usage chunk, then [DONE], as OpenRouter does.
    fake_llm.enqueue(fake.Reply(text="one two three"))
    events = await collect(client)
    assert [type(e) for e in events] == [Delta, Delta, Delta, TextComplete, Finished]


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(fake.Reply(text="the whole answer", drop_after_finish=True), id="connection-lost"),
        pytest.param(fake.Reply(text="the whole answer", usage_delay=30.0), id="usage-too-late"),
    ],
)
async def test_a_complete_text_survives_a_failure_before_the_usage(fake_llm: FakeLLM, reply: fake.Reply) -> None:
    """The text is whole once a choice says why it ended: losing the usage chunk or [DONE] after it must not turn
    an answer OpenRouter has billed into a failure."""
    client = make_client(fake_llm, timeout=2.0)
    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(message.record["message"]), level="WARNING")
    try:
        fake_llm.enqueue(reply)
        events = await collect(client)
    finally:
        logger.remove(sink)
        await client.close()
    assert [type(e) for e in events] == [Delta, Delta, Delta, TextComplete, Finished]
    assert text_of(events) == "the whole answer"
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.finish_reason == "stop"
    assert finished.usage == Usage()
    assert len(warnings) == 1
    assert MODEL in warnings[0] and "complete" in warnings[0]


async def test_a_connection_lost_before_the_text_is_complete_is_still_a_failure(
    client: LLMClient, fake_llm: FakeLLM
) -> None:
    fake_llm.enqueue(fake.Drop(after_text="half"))
    with pytest.raises(LLMUnavailable) as caught:
        await collect(client)
    assert caught.value.model_id == MODEL


async def test_keepalive_comments_are_ignored(client: LLMClient, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(fake.Reply(text="fine", ttft=0.05, keepalive_interval=0.01))
    assert text_of(await collect(client)) == "fine"


async def test_empty_answer_finishes_without_deltas(client: LLMClient, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(fake.Reply(text=""))
    events = await collect(client)
    assert [type(e) for e in events] == [TextComplete, Finished]


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        pytest.param(fake.Error(status=401), LLMAccountProblem, id="401"),
        pytest.param(fake.Error(status=402), LLMAccountProblem, id="402"),
        pytest.param(fake.Moderation(), LLMModerated, id="403"),
        pytest.param(fake.Error(status=408), LLMTimeout, id="408"),
        pytest.param(fake.Error(status=413), LLMBadRequest, id="413"),
        pytest.param(fake.Error(status=400, message="Context too long"), LLMBadRequest, id="400"),
        # A model OpenRouter withdrew: what helps is another model, not a shorter message.
        pytest.param(
            fake.Error(status=400, message="meta-llama/x:free is not a valid model ID"), LLMModelGone, id="400-gone"
        ),
        pytest.param(fake.Error(status=404, message="No endpoints found for x/y."), LLMModelGone, id="404-gone"),
        pytest.param(fake.Error(status=404, message="Not Found"), LLMUnavailable, id="404"),
        # The same prefix for the account's privacy settings (the operator's to change) and for a request no
        # provider of the model takes: the model itself is still there.
        pytest.param(fake.Error(status=404, message=DATA_POLICY), LLMAccountProblem, id="404-data-policy"),
        pytest.param(
            fake.Error(status=404, message="No endpoints found that support image input"),
            LLMBadRequest,
            id="404-no-image-input",
        ),
        pytest.param(
            fake.Error(status=404, message="No endpoints found that support tool use. To learn more, visit ..."),
            LLMBadRequest,
            id="404-no-tool-use",
        ),
        pytest.param(
            fake.Error(status=404, message="No endpoints found that support the requested output modalities: image"),
            LLMBadRequest,
            id="404-no-output-modality",
        ),
        # 403 is moderation only when OpenRouter says what was flagged.
        pytest.param(fake.Error(status=403, message=KEY_LIMIT), LLMAccountProblem, id="403-key-limit"),
        pytest.param(
            fake.Error(status=403, message="Key limit exceeded (monthly limit). Manage it using ..."),
            LLMAccountProblem,
            id="403-key-monthly-limit",
        ),
        pytest.param(fake.Error(status=403, message=REGION), LLMRegionBlocked, id="403-region"),
        pytest.param(
            fake.Error(status=403, message="Provider returned error", metadata=UPSTREAM_REGION),
            LLMRegionBlocked,
            id="403-upstream-region",
        ),
        pytest.param(
            fake.Error(status=400, message="Provider returned error", metadata=GOOGLE_REGION),
            LLMRegionBlocked,
            id="400-upstream-location",
        ),
        pytest.param(fake.Error(status=403, message="Forbidden"), LLMUnavailable, id="403-unexplained"),
        pytest.param(fake.ErrorBody200(code=403, message=KEY_LIMIT), LLMAccountProblem, id="200-error-body-key-limit"),
        pytest.param(fake.Error(status=429), LLMRateLimited, id="429"),
        # The account's free-model allowance is spent until tomorrow: not "try again in a minute".
        pytest.param(fake.Error(status=429, message=FREE_DAILY), LLMAccountProblem, id="429-free-models-per-day"),
        pytest.param(fake.Error(status=500), LLMUnavailable, id="500"),
        pytest.param(fake.Error(status=502), LLMUnavailable, id="502"),
        pytest.param(fake.MidStreamError(code="429"), LLMRateLimited, id="mid-stream-string-code"),
        pytest.param(fake.MidStreamError(), LLMUnavailable, id="mid-stream"),
        pytest.param(fake.ErrorBody200(code=402), LLMAccountProblem, id="200-error-body-402"),
        pytest.param(fake.ErrorBody200(code="oops"), LLMUnavailable, id="200-error-body-no-status"),
        pytest.param(fake.Drop(), LLMUnavailable, id="dropped"),
        pytest.param(fake.Drop(after_text="half"), LLMUnavailable, id="dropped-mid-stream"),
        # Ended like a complete response, but without a finish_reason or [DONE]: half an answer, not an answer.
        pytest.param(fake.Drop(after_text="half", cleanly=True), LLMUnavailable, id="ended-mid-stream"),
    ],
)
async def test_failures_become_domain_errors(
    client: LLMClient, fake_llm: FakeLLM, action: fake.Action, expected: type[LLMError]
) -> None:
    fake_llm.enqueue(action)
    with pytest.raises(LLMError) as caught:
        await collect(client)
    assert type(caught.value) is expected


async def test_provider_text_is_detail_not_user_message(client: LLMClient, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(fake.Moderation(reasons=("harassment",)))
    with pytest.raises(LLMModerated) as caught:
        await collect(client)
    assert "harassment" in caught.value.detail
    assert "harassment" not in str(caught.value)
    assert caught.value.user_message == LLMModerated.user_message


async def test_a_region_refusal_names_the_model_and_the_providers_words(client: LLMClient, fake_llm: FakeLLM) -> None:
    """The admins' alert has to say which model to replace, and why: OpenRouter's own text is "Provider returned
    error"."""
    fake_llm.enqueue(fake.Error(status=403, message="Provider returned error", metadata=UPSTREAM_REGION))
    with pytest.raises(LLMRegionBlocked) as caught:
        await collect(client)
    assert caught.value.model_id == MODEL
    assert caught.value.detail.startswith("Provider returned error (OpenAI: ")
    assert "unsupported_country_region_territory" in caught.value.detail
    assert "territory" not in str(caught.value)


@pytest.mark.parametrize("send_headers", [False, True], ids=["before-headers", "during-body"])
async def test_timeout_is_llm_timeout(fake_llm: FakeLLM, send_headers: bool) -> None:
    client = make_client(fake_llm, timeout=0.2)
    try:
        fake_llm.enqueue(fake.Hang(send_headers=send_headers))
        with pytest.raises(LLMTimeout):
            await collect(client)
    finally:
        await client.close()


async def test_keep_alives_alone_do_not_hold_a_request_past_the_timeout(fake_llm: FakeLLM) -> None:
    """OpenRouter's keep-alive comments reset the connection's read timeout: a model stuck before its first word was
    waited for as long as they came."""
    # The client and the fake share this loop: a timeout of a few ticks would trip on a loaded machine's stall.
    client = make_client(fake_llm, timeout=2.0)
    try:
        fake_llm.enqueue(fake.Reply(text="late", ttft=20.0, keepalive_interval=0.1))
        started = asyncio.get_running_loop().time()
        with pytest.raises(LLMTimeout) as caught:
            await collect(client)
        assert "nothing but keep-alives" in caught.value.detail
        # Given up long before the words were due, and the request closed while the keep-alives still came.
        assert asyncio.get_running_loop().time() - started < 10.0
        await fake_llm.wait_for_cancelled_streams()
        assert fake_llm.requests[-1].cancelled
        # Keep-alives, then words within the timeout: an answer as usual.
        fake_llm.enqueue(fake.Reply(text="on time", ttft=0.3, keepalive_interval=0.1))
        events = await collect(client)
        assert "".join(e.text for e in events if isinstance(e, Delta)) == "on time"
    finally:
        await client.close()


async def test_unreachable_server_is_unavailable(fake_llm: FakeLLM) -> None:
    client = make_client(fake_llm, base_url="http://127.0.0.1:9/api/v1")
    try:
        with pytest.raises(LLMUnavailable) as caught:
            await collect(client)
        assert type(caught.value) is LLMUnavailable
    finally:
        await client.close()


@pytest.mark.parametrize("status", [429, 500, 502])
async def test_transient_errors_are_retried_before_streaming(fake_llm: FakeLLM, status: int) -> None:
    client = make_client(fake_llm, max_retries=1)
    try:
        fake_llm.enqueue(fake.Error(status=status, retry_after=0), fake.Reply(text="second try"))
        assert text_of(await collect(client)) == "second try"
        assert fake_llm.request_count == 2
    finally:
        await client.close()


@pytest.mark.parametrize("status", [401, 402, 403])
async def test_refusals_are_not_retried(fake_llm: FakeLLM, status: int) -> None:
    client = make_client(fake_llm, max_retries=2)
    try:
        fake_llm.enqueue(fake.Error(status=status), fake.Reply(text="never"))
        with pytest.raises(LLMError):
            await collect(client)
        assert fake_llm.request_count == 1
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, LLMAccountProblem),
        (402, LLMAccountProblem),
        # Without OpenRouter's moderation metadata a 403 is not a moderation refusal.
        (403, LLMUnavailable),
        (408, LLMTimeout),
        (429, LLMRateLimited),
        (400, LLMBadRequest),
        (413, LLMBadRequest),
        (422, LLMBadRequest),
        (500, LLMUnavailable),
        (502, LLMUnavailable),
        (503, LLMUnavailable),
        (None, LLMUnavailable),
    ],
)
def test_error_for_status(status: int | None, expected: type[LLMError]) -> None:
    error = error_for_status(status, "provider text")
    assert type(error) is expected
    assert error.detail == "provider text"


def test_moderation_is_told_by_its_metadata() -> None:
    metadata = {"reasons": ["violence"], "flagged_input": "...", "provider_name": "OpenAI", "model_slug": MODEL}
    assert type(error_for_status(403, "Your input was flagged", metadata)) is LLMModerated
    assert type(error_for_status(403, "Your input was flagged", {"provider_name": "OpenAI"})) is LLMUnavailable


def test_account_problem_is_shown_as_unavailable() -> None:
    assert issubclass(LLMAccountProblem, LLMUnavailable)
    assert LLMAccountProblem.user_message == LLMUnavailable.user_message


def test_translate_unknown_exception_is_unavailable() -> None:
    translated = translate(ValueError("boom"))
    assert type(translated) is LLMUnavailable
    assert translated.detail == "ValueError"


async def test_http_proxy_from_the_environment_is_used(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fake answers requests in proxy form too; the model's host itself does not resolve, so only a client that
    # goes through HTTP_PROXY reaches it.
    monkeypatch.setenv("HTTP_PROXY", fake_llm.base_url.removesuffix("/api/v1"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = make_client(fake_llm, base_url="http://llm.invalid/api/v1")
    try:
        fake_llm.enqueue(fake.Reply(text="through the proxy"))
        assert text_of(await collect(client)) == "through the proxy"
    finally:
        await client.close()


async def test_without_a_proxy_the_host_is_reached_directly(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = make_client(fake_llm)
    try:
        fake_llm.enqueue(fake.Reply(text="direct"))
        assert text_of(await collect(client)) == "direct"
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("environment", "host", "expected"),
    [
        ({"HTTPS_PROXY": "http://proxy:3128"}, "openrouter.ai", ("http://proxy:3128", {})),
        ({"HTTPS_PROXY": "proxy:3128"}, "openrouter.ai", ("http://proxy:3128", {})),
        (
            {"HTTPS_PROXY": "http://me:secret@proxy:3128"},
            "openrouter.ai",
            ("http://proxy:3128", {"Proxy-Authorization": "Basic bWU6c2VjcmV0"}),
        ),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": ".openrouter.ai"}, "openrouter.ai", None),
        ({"HTTP_PROXY": "http://proxy:3128"}, "openrouter.ai", None),  # only the https proxy serves https
        ({}, "openrouter.ai", None),
    ],
)
def test_the_proxy_is_read_from_the_environment(
    environment: dict[str, str],
    host: str,
    expected: tuple[str, dict[str, str]] | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    proxy = _proxy_from_environment("https", host)
    if expected is None:
        assert proxy is None
    else:
        assert proxy is not None
        assert (str(proxy[0]), proxy[1]) == expected


async def _chunks(*parts: bytes) -> AsyncGenerator[bytes, None]:
    for part in parts:
        yield part


async def sse_data(*parts: bytes) -> list[bytes]:
    return [data async for data in _sse_data(_chunks(*parts), 60.0)]


async def test_server_sent_events_are_read_across_chunks_and_line_endings() -> None:
    stream = (
        b': OPENROUTER PROCESSING\n\ndata: {"a": 1}\r\n\r\nevent: x\nid: 7\ndata: one\ndata:two\r\rdata: [DONE]\n\n'
    )
    expected = [b'{"a": 1}', b"one\ntwo", b"[DONE]"]
    assert await sse_data(stream) == expected
    # However the bytes are cut, a CRLF split between two reads included, the events are the same.
    for cut in range(1, len(stream)):
        assert await sse_data(stream[:cut], stream[cut:]) == expected, cut
    assert await sse_data(*(stream[i : i + 1] for i in range(len(stream)))) == expected


async def test_the_streams_end_ends_its_last_event() -> None:
    assert await sse_data(b"data: last") == [b"last"]
    assert await sse_data(b"data: a\n", b"data: b\r") == [b"a\nb"]
    assert await sse_data(b": only a comment\n") == []
