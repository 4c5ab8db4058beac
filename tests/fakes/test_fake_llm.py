"""The fake OpenRouter server, exercised through the real ``openai.AsyncOpenAI`` client."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.fakes.openai_server import (
    COMPLETION_PRICE,
    PROMPT_PRICE,
    Drop,
    Error,
    ErrorBody200,
    FakeLLM,
    Hang,
    MidStreamError,
    Moderation,
    Reply,
    count_prompt_tokens,
    echo_text,
    split_tokens,
)

API_KEY = "sk-or-test"
MODEL = "openai/gpt-4o-mini"
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM(api_key=API_KEY) as server:
        yield server


def make_client(llm: FakeLLM, **kwargs: Any) -> openai.AsyncOpenAI:
    options: dict[str, Any] = {"base_url": llm.base_url, "api_key": API_KEY, "max_retries": 0}
    options.update(kwargs)
    return openai.AsyncOpenAI(**options)


async def collect(stream: openai.AsyncStream[Any]) -> tuple[str, list[Any]]:
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


async def test_streams_echo_with_usage_chunk_and_records_request(llm: FakeLLM) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "system", "content": "Be brief."}, *USER]
    headers = {"HTTP-Referer": "https://t.me/pomogator_bot", "X-Title": "Pomogator"}
    async with make_client(llm, default_headers=headers) as client:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=messages,
            stream=True,
            max_tokens=256,
            extra_body={"usage": {"include": True}},
        )
        text, chunks = await collect(stream)

    assert text == "Echo: hello there"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert [c.choices[0].delta.content for c in content_chunks] == ["Echo:", " hello", " there"]
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    prompt_tokens = count_prompt_tokens(messages)
    assert usage_chunk.usage.prompt_tokens == prompt_tokens == 4 + 2 + 4 + 2
    assert usage_chunk.usage.completion_tokens == 3
    assert usage_chunk.usage.total_tokens == prompt_tokens + 3
    expected_cost = prompt_tokens * PROMPT_PRICE + 3 * COMPLETION_PRICE
    assert usage_chunk.usage.model_dump()["cost"] == pytest.approx(expected_cost)
    assert {c.model for c in chunks} == {MODEL}
    assert len({c.id for c in chunks}) == 1

    [request] = await llm.wait_for_requests(1)
    assert llm.request_count == 1
    assert request.path == "/api/v1/chat/completions"
    assert request.model == MODEL
    assert request.stream is True
    assert request.max_tokens == 256
    assert request.system_prompt == "Be brief."
    assert request.last_user_text == "hello there"
    assert request.messages == messages
    assert request.headers["http-referer"] == "https://t.me/pomogator_bot"
    assert request.headers["X-Title"] == "Pomogator"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.status == 200
    assert request.cancelled is False
    assert llm.completed_streams == 1


async def test_usage_chunk_only_when_requested(llm: FakeLLM) -> None:
    async with make_client(llm) as client:
        _, plain = await collect(await client.chat.completions.create(model=MODEL, messages=USER, stream=True))
        _, with_options = await collect(
            await client.chat.completions.create(
                model=MODEL,
                messages=USER,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert all(c.usage is None for c in plain)
    assert plain[-1].choices[0].finish_reason == "stop"
    assert with_options[-1].choices == []
    assert with_options[-1].usage.completion_tokens == 3

    async with FakeLLM(always_usage=True) as always, make_client(always) as client:
        _, chunks = await collect(await client.chat.completions.create(model=MODEL, messages=USER, stream=True))
    assert chunks[-1].usage is not None


async def test_non_streaming_completion_has_usage(llm: FakeLLM) -> None:
    llm.enqueue(Reply(text="Fixed answer.", prompt_tokens=100, completion_tokens=7, cost=0.5))
    async with make_client(llm) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=USER)
    assert completion.choices[0].message.content == "Fixed answer."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (100, 7)
    assert completion.usage.total_tokens == 107
    assert completion.usage.model_dump()["cost"] == 0.5
    assert llm.requests[0].stream is False


async def test_scripted_replies_are_consumed_in_order_then_default(llm: FakeLLM) -> None:
    llm.enqueue(Reply(text="first"), Reply(text="second", finish_reason="length"))
    llm.default = Reply(text="fallback")
    async with make_client(llm) as client:
        answers = []
        for _ in range(3):
            completion = await client.chat.completions.create(model=MODEL, messages=USER)
            answers.append((completion.choices[0].message.content, completion.choices[0].finish_reason))
    assert answers == [("first", "stop"), ("second", "length"), ("fallback", "stop")]
    assert llm.pending_actions == 0


async def test_model_scoped_actions_script_a_fallback(llm: FakeLLM) -> None:
    llm.enqueue(Error(status=503, message="No endpoints found"), model="anthropic/claude-3.5-sonnet")
    async with make_client(llm) as client:
        ok = await client.chat.completions.create(model=MODEL, messages=USER)
        assert ok.choices[0].message.content == "Echo: hello there"
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="anthropic/claude-3.5-sonnet", messages=USER)
    assert caught.value.status_code == 503
    assert [r.model for r in llm.requests] == [MODEL, "anthropic/claude-3.5-sonnet"]


async def test_chunk_size_groups_tokens(llm: FakeLLM) -> None:
    llm.enqueue(Reply(text="one two three four five", chunk_size=2))
    async with make_client(llm) as client:
        _, chunks = await collect(await client.chat.completions.create(model=MODEL, messages=USER, stream=True))
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert contents == ["one two", " three four", " five"]


def test_split_tokens_round_trips_text() -> None:
    text = "  Hello,\n\nworld!  Multi   space "
    assert "".join(split_tokens(text)) == text
    assert split_tokens("a b") == ["a", " b"]
    assert split_tokens("") == []


async def test_image_parts_are_recorded_and_echoed(llm: FakeLLM) -> None:
    image = "data:image/png;base64,iVBORw0KGgo="
    messages: list[ChatCompletionMessageParam] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": image}},
            ],
        }
    ]
    async with make_client(llm) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=messages)
    assert completion.choices[0].message.content == "Echo: What is this? [images: 1]"
    assert completion.choices[0].message.content == echo_text(messages)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 4 + 3 + 85
    assert llm.requests[0].image_urls == [image]
    assert llm.requests[0].last_user_text == "What is this?"


async def test_wrong_api_key_is_rejected_openrouter_style(llm: FakeLLM) -> None:
    async with make_client(llm, api_key="sk-wrong") as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(model=MODEL, messages=USER)
    assert caught.value.status_code == 401
    assert caught.value.body == {"code": 401, "message": "User not found."}
    assert llm.requests[0].status == 401


async def test_empty_messages_are_a_bad_request(llm: FakeLLM) -> None:
    async with make_client(llm) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model=MODEL, messages=[])
    assert caught.value.status_code == 400


async def test_rate_limit_error_with_retry_after_is_retried_by_sdk(llm: FakeLLM) -> None:
    llm.enqueue(Error(status=429, message="Rate limited upstream", retry_after=0.05))
    async with make_client(llm) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model=MODEL, messages=USER)
    assert caught.value.body == {"code": 429, "message": "Rate limited upstream"}
    assert caught.value.response.headers["Retry-After"] == "0.05"

    llm.enqueue(Error(status=429, retry_after=0.05))
    async with make_client(llm, max_retries=1) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=USER)
    assert completion.choices[0].message.content == "Echo: hello there"
    assert [r.status for r in llm.requests] == [429, 429, 200]


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, openai.BadRequestError),
        (402, openai.APIStatusError),
        (408, openai.APIStatusError),
        (502, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
async def test_http_errors_map_to_sdk_exceptions(
    llm: FakeLLM, status: int, exception: type[openai.APIStatusError]
) -> None:
    llm.enqueue(Error(status=status, message=f"failure {status}", metadata={"provider_name": "X"}))
    async with make_client(llm) as client:
        with pytest.raises(exception) as caught:
            await client.chat.completions.create(model=MODEL, messages=USER, stream=True)
    assert caught.value.status_code == status
    assert caught.value.body == {
        "code": status,
        "message": f"failure {status}",
        "metadata": {"provider_name": "X"},
    }


async def test_moderation_is_a_403_with_metadata(llm: FakeLLM) -> None:
    llm.enqueue(Moderation(reasons=("harassment",), flagged_input="bad words"))
    async with make_client(llm) as client:
        with pytest.raises(openai.PermissionDeniedError) as caught:
            await client.chat.completions.create(model=MODEL, messages=USER)
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["code"] == 403
    assert "flagged" in body["message"]
    assert body["metadata"] == {
        "reasons": ["harassment"],
        "flagged_input": "bad words",
        "provider_name": "OpenAI",
        "model_slug": MODEL,
    }


async def test_moderation_class_can_be_enqueued_without_arguments(llm: FakeLLM) -> None:
    llm.enqueue(Moderation)
    async with make_client(llm) as client:
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model=MODEL, messages=USER)


async def test_mid_stream_error_after_partial_text(llm: FakeLLM) -> None:
    llm.enqueue(MidStreamError(after_text="Half of the", message="Provider disconnected", code=502))
    received: list[str] = []
    async with make_client(llm) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=USER, stream=True)
        with pytest.raises(openai.APIError) as caught:
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Half of the"
    assert not isinstance(caught.value, openai.APIStatusError)
    assert caught.value.message == "Provider disconnected"
    assert caught.value.body == {"code": 502, "message": "Provider disconnected"}
    assert llm.requests[0].status == 200


async def test_mid_stream_error_without_streaming(llm: FakeLLM) -> None:
    llm.enqueue(MidStreamError(after_text="partial", code="server_error"))
    async with make_client(llm) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=USER)
    # "error" is outside the SDK's finish_reason Literal, hence the str() for the type checker.
    assert str(completion.choices[0].finish_reason) == "error"
    assert completion.choices[0].message.content == "partial"
    assert (completion.model_extra or {})["error"]["code"] == "server_error"


async def test_error_body_with_http_200(llm: FakeLLM) -> None:
    llm.enqueue(ErrorBody200(message="Model crashed", code=502))
    async with make_client(llm) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=USER)
        # The SDK does not validate the body: no choices, the error only in the extra fields.
        assert completion.choices is None
        assert (completion.model_extra or {})["error"] == {"code": 502, "message": "Model crashed"}

        llm.enqueue(ErrorBody200(message="Model crashed", code=502))
        stream = await client.chat.completions.create(model=MODEL, messages=USER, stream=True)
        with pytest.raises(openai.APIError) as caught:
            await collect(stream)
    assert caught.value.message == "Model crashed"


async def test_hang_times_out_client_and_counts_as_cancelled(llm: FakeLLM) -> None:
    llm.enqueue(Hang(30))
    async with make_client(llm, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model=MODEL, messages=USER, stream=True)
    assert time.monotonic() - started < 5
    await llm.wait_for_cancelled_streams(1)
    assert llm.requests[0].cancelled is True
    assert llm.requests[0].status == 499


async def test_hang_after_headers_times_out_while_reading(llm: FakeLLM) -> None:
    llm.enqueue(Hang(30, send_headers=True))
    async with make_client(llm, timeout=0.3) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=USER, stream=True)
        with pytest.raises(openai.APITimeoutError):
            await collect(stream)
    await llm.wait_for_cancelled_streams(1)


async def test_short_hang_then_default_reply(llm: FakeLLM) -> None:
    llm.enqueue(Hang(0.2))
    async with make_client(llm) as client:
        started = time.monotonic()
        completion = await client.chat.completions.create(model=MODEL, messages=USER)
    assert time.monotonic() - started >= 0.2
    assert completion.choices[0].message.content == "Echo: hello there"


async def test_hanging_request_is_released_when_server_closes() -> None:
    async with FakeLLM() as server:
        server.enqueue(Hang(3600))
        client = make_client(server, api_key="any")
        task = asyncio.create_task(client.chat.completions.create(model=MODEL, messages=USER))
        await server.wait_for_requests(1)
    with pytest.raises(openai.APIStatusError) as caught:
        await asyncio.wait_for(task, 5)
    assert caught.value.status_code == 503
    assert server.cancelled_streams == 0
    await client.close()


async def test_drop_aborts_connection(llm: FakeLLM) -> None:
    llm.enqueue(Drop(after_text="cut"))
    received: list[str] = []
    async with make_client(llm) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=USER, stream=True)
        with pytest.raises(openai.APIConnectionError):
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")
    assert received == ["cut"]
    assert llm.cancelled_streams == 0
    assert llm.requests[0].status == 444


async def test_client_closing_stream_is_seen_as_cancelled(llm: FakeLLM) -> None:
    llm.enqueue(Reply.slow(tokens=200, seconds=10))
    async with make_client(llm) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=USER, stream=True)
        first = [await anext(aiter(stream)) for _ in range(2)]
        await stream.close()
    assert [c.choices[0].delta.content for c in first] == ["tok0", " tok1"]
    await llm.wait_for_cancelled_streams(1)
    await llm.wait_idle()
    assert llm.requests[0].cancelled is True
    assert llm.completed_streams == 0


async def test_ttft_and_token_rate_are_honoured(llm: FakeLLM) -> None:
    llm.enqueue(Reply(text="a b c d e", ttft=0.2, tokens_per_second=20))
    arrivals: list[float] = []
    async with make_client(llm) as client:
        started = time.monotonic()
        stream = await client.chat.completions.create(model=MODEL, messages=USER, stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 5
    assert arrivals[0] >= 0.19
    # Token k is due at ttft + (k - 1) / rate: the fifth at 0.2 + 4 / 20 = 0.4 s.
    assert arrivals[-1] >= 0.39
    assert arrivals[-1] < 2.0


async def test_slow_reply_spreads_tokens_over_the_duration(llm: FakeLLM) -> None:
    llm.enqueue(Reply.slow(tokens=6, seconds=0.3))
    async with make_client(llm) as client:
        started = time.monotonic()
        text, _ = await collect(await client.chat.completions.create(model=MODEL, messages=USER, stream=True))
        elapsed = time.monotonic() - started
    assert text == "tok0 tok1 tok2 tok3 tok4 tok5"
    assert 0.29 <= elapsed < 2.0


async def test_keepalive_comments_are_ignored_by_the_sdk(llm: FakeLLM) -> None:
    llm.enqueue(Reply(text="after the wait", ttft=0.25, keepalive_interval=0.05))
    async with make_client(llm) as client:
        text, _ = await collect(await client.chat.completions.create(model=MODEL, messages=USER, stream=True))
    assert text == "after the wait"


async def test_max_concurrency_counts_parallel_streams() -> None:
    async with FakeLLM(ttft=0.2) as server, make_client(server, api_key="any") as client:

        async def one(i: int) -> str:
            messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": f"n{i}"}]
            stream = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
            text, _ = await collect(stream)
            return text

        texts = await asyncio.gather(*(one(i) for i in range(5)))
        assert texts == [f"Echo: n{i}" for i in range(5)]
        assert server.max_concurrency == 5
        assert server.in_flight == 0
        assert server.completed_streams == 5


async def test_default_rate_from_constructor() -> None:
    async with FakeLLM(ttft=0.15, tokens_per_second=100) as server:
        assert server.default == Reply(ttft=0.15, tokens_per_second=100)
        async with make_client(server, api_key="any") as client:
            started = time.monotonic()
            await client.chat.completions.create(model=MODEL, messages=USER)
        assert time.monotonic() - started >= 0.15


async def test_error_as_default_fails_every_request(llm: FakeLLM) -> None:
    llm.default = Error(status=502, message="down")
    async with make_client(llm) as client:
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model=MODEL, messages=USER)
    assert llm.request_count == 2


async def test_models_listing(llm: FakeLLM) -> None:
    async with make_client(llm) as client:
        models = [model.id async for model in client.models.list()]
    assert models == llm.models


async def test_wait_for_requests_reports_a_timeout(llm: FakeLLM) -> None:
    with pytest.raises(AssertionError, match="timed out"):
        await llm.wait_for_requests(1, timeout=0.05)


async def test_runs_standalone_as_a_process() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.openai_server",
        "--port",
        "0",
        "--api-key",
        API_KEY,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        base_url = line.decode().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/api/v1")
        async with openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=0) as client:
            completion = await client.chat.completions.create(model=MODEL, messages=USER)
        assert completion.choices[0].message.content == "Echo: hello there"
    finally:
        process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0
    assert b"requests=1" in stderr
