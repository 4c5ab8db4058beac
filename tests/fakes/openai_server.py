"""A fake OpenRouter (OpenAI-compatible) chat completions API served over real HTTP.

The product talks to it with the unmodified ``openai.AsyncOpenAI`` client pointed at ``FakeLLM.base_url``,
so streaming, retries, timeouts and error mapping are exercised exactly as in production. The wire format
follows OpenRouter: SSE chunks with ``choices[0].delta.content``, a final chunk carrying ``finish_reason``,
an optional usage chunk with ``"choices": []`` and ``usage.cost``, then ``data: [DONE]``; errors use the
``{"error": {"code", "message", "metadata"}}`` body, and failures after the model started are reported
inside a 200 response (an SSE chunk with ``error`` and ``finish_reason: "error"``).

In tests::

    async with FakeLLM(api_key="sk-test") as llm:
        llm.enqueue(Error(status=429, message="Rate limited", retry_after=1))
        client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="sk-test")
        ...
        assert llm.requests[0].model == "openai/gpt-4o-mini"

Standalone (benchmarks, manual runs)::

    python -m tests.fakes.openai_server --port 8081 --ttft 0.5 --tokens-per-second 50
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import ssl
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.serving import AppServer

__all__ = [
    "COMPLETION_PRICE",
    "PROMPT_PRICE",
    "Action",
    "Drop",
    "Error",
    "ErrorBody200",
    "FakeLLM",
    "Hang",
    "MidStreamError",
    "Moderation",
    "RecordedRequest",
    "Reply",
    "count_prompt_tokens",
    "echo_text",
    "split_tokens",
]

# Credits per token used for the reported ``usage.cost``; deterministic so billing code can be asserted.
PROMPT_PRICE = 0.000001
COMPLETION_PRICE = 0.000002

# OpenRouter lives under /api/v1; /v1 is accepted too so a plain OpenAI-style base URL also works.
_API_PREFIXES = ("/api/v1", "/v1")
_TOKEN_RE = re.compile(r"\s*\S+|\s+$")
# Recorded as ``RecordedRequest.status`` for requests that never got a complete answer (nginx's codes).
_STATUS_CLIENT_CLOSED = 499
_STATUS_DROPPED = 444
_DEFAULT_MODELS = ("openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet", "google/gemini-2.0-flash-001")


# --------------------------------------------------------------------------------------------------
# Script actions: what the server does with one request
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A successful completion.

    ``text=None`` echoes the last user message (see :func:`echo_text`). Token ``k`` (1-based) is sent at
    ``ttft + (k - 1) / tokens_per_second`` seconds after the request arrived; without a rate all tokens
    follow the first one immediately. ``chunk_size`` tokens go into each SSE chunk. Usage numbers are
    computed from the request and reply unless overridden.
    """

    text: str | None = None
    ttft: float = 0.0
    tokens_per_second: float | None = None
    chunk_size: int = 1
    finish_reason: str = "stop"
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    # Emit OpenRouter's ": OPENROUTER PROCESSING" SSE comments this often while waiting for the first token.
    keepalive_interval: float | None = None
    # Seconds between the chunk with finish_reason and the usage chunk (OpenRouter works out the cost meanwhile).
    usage_delay: float = 0.0
    # Abort the connection after the chunk with finish_reason (and ``usage_delay``): the text is whole, the usage
    # chunk and [DONE] never come.
    drop_after_finish: bool = False

    @classmethod
    def slow(cls, tokens: int, seconds: float, *, ttft: float = 0.0, word: str = "tok") -> Reply:
        """A reply of ``tokens`` words whose last token arrives ``ttft + seconds`` after the request."""
        if tokens < 1:
            raise ValueError("tokens must be >= 1")
        text = " ".join(f"{word}{i}" for i in range(tokens))
        rate = (tokens - 1) / seconds if tokens > 1 and seconds > 0 else None
        return cls(text=text, ttft=ttft, tokens_per_second=rate)


@dataclass(frozen=True)
class Error:
    """An HTTP error before anything is streamed, with OpenRouter's error body.

    ``code`` defaults to ``status``. ``retry_after`` (seconds) becomes a ``Retry-After`` header, which the
    openai SDK honours when it retries 408/409/429/5xx.
    """

    status: int = 429
    message: str = "Rate limit exceeded: too many requests"
    code: int | str | None = None
    retry_after: float | None = None
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class MidStreamError:
    """Stream ``after_text`` normally, then an error chunk with ``finish_reason: "error"``; no [DONE].

    For a non-streaming request the response is HTTP 200 with the partial message and the error object.
    """

    after_text: str = "partial"
    message: str = "Provider disconnected unexpectedly"
    code: int | str = 502
    ttft: float = 0.0
    tokens_per_second: float | None = None


@dataclass(frozen=True)
class ErrorBody200:
    """HTTP 200 whose body is only an error (the model failed after OpenRouter accepted the request).

    Non-streaming: a JSON body ``{"error": {...}}`` without ``choices``. Streaming: a single SSE data event
    ``{"error": {...}}`` and the end of the stream.
    """

    message: str = "Upstream provider returned an error"
    code: int | str = 502
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Hang:
    """Accept the request and send nothing for ``seconds``, then answer with the default reply.

    With ``send_headers=True`` a streaming request gets its 200 SSE headers first, so the client blocks
    while reading the body rather than while waiting for the response. Hanging requests are released
    when the server closes.
    """

    seconds: float = 3600.0
    send_headers: bool = False


@dataclass(frozen=True)
class Moderation:
    """HTTP 403 for flagged input, with OpenRouter's moderation metadata."""

    reasons: tuple[str, ...] = ("violence",)
    flagged_input: str = "flagged input"
    provider_name: str = "OpenAI"
    model_slug: str | None = None  # defaults to the requested model


@dataclass(frozen=True)
class Drop:
    """Stream ``after_text`` (possibly nothing), then abort the TCP connection without finishing; with
    ``cleanly``, end the response as if it were complete instead (no final chunk, no [DONE]: a proxy giving up)."""

    after_text: str = ""
    cleanly: bool = False


Action = Reply | Error | MidStreamError | ErrorBody200 | Hang | Moderation | Drop


class _DroppedError(Exception):
    """The server aborted the connection on purpose (a :class:`Drop` action)."""


# --------------------------------------------------------------------------------------------------
# Recorded requests and helpers
# --------------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request as the server saw it; ``status``/``cancelled`` are filled in when it finishes."""

    method: str
    path: str
    headers: CIMultiDict[str]
    json: dict[str, Any]
    received_at: float
    # The HTTP status sent; 499 when the client went away first, 444 when a Drop (or a Reply dropped after its
    # text) aborted the connection.
    status: int | None = None
    cancelled: bool = False
    action: Action | None = None
    # ``time.monotonic()`` when the server was done with the request, whatever its end; None while in flight.
    finished_at: float | None = None

    @property
    def model(self) -> str | None:
        value = self.json.get("model")
        return value if isinstance(value, str) else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        value = self.json.get("messages")
        return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []

    @property
    def stream(self) -> bool:
        return bool(self.json.get("stream"))

    @property
    def max_tokens(self) -> int | None:
        value = self.json.get("max_tokens", self.json.get("max_completion_tokens"))
        return value if isinstance(value, int) else None

    @property
    def wants_usage(self) -> bool:
        usage = self.json.get("usage")
        options = self.json.get("stream_options")
        return (isinstance(usage, dict) and bool(usage.get("include"))) or (
            isinstance(options, dict) and bool(options.get("include_usage"))
        )

    @property
    def system_prompt(self) -> str | None:
        for message in self.messages:
            if message.get("role") == "system":
                return _text_of(message.get("content"))
        return None

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return _text_of(message.get("content"))
        return ""

    @property
    def image_urls(self) -> list[str]:
        """``image_url.url`` of every image part in every message, in order."""
        urls: list[str] = []
        for message in self.messages:
            for part in _parts_of(message.get("content")):
                if part.get("type") == "image_url":
                    image = part.get("image_url")
                    url = image.get("url") if isinstance(image, dict) else image
                    if isinstance(url, str):
                        urls.append(url)
        return urls


def _parts_of(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return [part for part in content if isinstance(part, dict)]
    return []


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in _parts_of(content) if part.get("type") == "text")


def echo_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The default reply: ``"Echo: <last user text>"``, plus ``" [images: N]"`` when it had images."""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            images = sum(1 for part in _parts_of(content) if part.get("type") == "image_url")
            suffix = f" [images: {images}]" if images else ""
            return f"Echo: {_text_of(content)}{suffix}"
    return "Echo: "


def split_tokens(text: str) -> list[str]:
    """Split into word "tokens" (each keeps its leading whitespace) whose concatenation is ``text``."""
    return _TOKEN_RE.findall(text)


def count_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """A deterministic prompt size: 4 per message, 1 per word, 85 per image."""
    total = 0
    for message in messages:
        content = message.get("content")
        images = sum(1 for part in _parts_of(content) if part.get("type") == "image_url")
        total += 4 + len(_text_of(content).split()) + 85 * images
    return total


def _usage(prompt_tokens: int, completion_tokens: int, cost: float | None) -> dict[str, Any]:
    if cost is None:
        cost = round(prompt_tokens * PROMPT_PRICE + completion_tokens * COMPLETION_PRICE, 12)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "cost": cost,
        "is_byok": False,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "cost_details": {"upstream_inference_cost": None},
        "completion_tokens_details": {"reasoning_tokens": 0, "image_tokens": 0},
    }


def _error_body(code: int | str, message: str, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if metadata is not None:
        error["metadata"] = dict(metadata)
    return {"error": error}


def _sse(payload: Mapping[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------


class FakeLLM(AppServer):
    """OpenRouter-compatible server on 127.0.0.1; an async context manager running in the current loop.

    ``default`` answers every request that no queued action claims; ``enqueue`` scripts the next requests.
    All counters are plain attributes, safe to read from the test at any time.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        ttft: float = 0.0,
        tokens_per_second: float | None = None,
        chunk_size: int = 1,
        always_usage: bool = False,
        models: Sequence[str] = _DEFAULT_MODELS,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.api_key = api_key
        # With a server context the fake speaks HTTPS, as OpenRouter does.
        self.ssl_context = ssl_context
        self.default: Action = Reply(ttft=ttft, tokens_per_second=tokens_per_second, chunk_size=chunk_size)
        # Real OpenRouter sends the usage chunk only when asked; tests catch a client that forgets to ask.
        self.always_usage = always_usage
        self.models = list(models)
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_concurrency = 0
        self.cancelled_streams = 0
        self.completed_streams = 0
        self._script: deque[tuple[str | None, Action]] = deque()
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------

    # Cancelling the handler on disconnect is how a client-side "Stop" becomes observable.
    runner_options: ClassVar[dict[str, Any]] = {"handler_cancellation": True}

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for prefix in _API_PREFIXES:
            app.router.add_post(f"{prefix}/chat/completions", self._handle_chat)
            app.router.add_get(f"{prefix}/models", self._handle_models)
        return app

    @property
    def base_url(self) -> str:
        """What to pass as ``AsyncOpenAI(base_url=...)``."""
        return f"{self.url}/api/v1"

    # ---- scripting and assertions ------------------------------------------------------------------

    def enqueue(self, *actions: Action | type[Action], model: str | None = None) -> None:
        """Queue actions for the next requests, in order; with ``model`` only requests for that model
        consume them (other requests skip them), which scripts fallbacks between models."""
        for action in actions:
            self._script.append((model, action() if isinstance(action, type) else action))

    @property
    def pending_actions(self) -> int:
        return len(self._script)

    def clear_actions(self) -> list[Action]:
        """Drop the queued actions no request took (a test that ended early); returns them."""
        dropped = [action for _, action in self._script]
        self._script.clear()
        return dropped

    @property
    def request_count(self) -> int:
        return len(self.requests)

    # A plain ``timeout`` argument keeps call sites short; these helpers are test-only.
    async def wait_for_requests(
        self,
        n: int,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[RecordedRequest]:
        """Wait until at least ``n`` chat requests arrived; returns all recorded requests."""
        await self._wait_until(lambda: len(self.requests) >= n, timeout, f"{n} request(s)")
        return list(self.requests)

    async def wait_for_cancelled_streams(self, n: int = 1, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until ``n`` requests were abandoned by their client mid-response."""
        await self._wait_until(lambda: self.cancelled_streams >= n, timeout, f"{n} cancelled stream(s)")

    async def wait_idle(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until no request is in flight."""
        await self._wait_until(lambda: self.in_flight == 0, timeout, "no requests in flight")

    async def _wait_until(self, predicate: Callable[[], bool], seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not predicate():
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"FakeLLM: timed out after {seconds}s waiting for {what}; "
                    f"requests={len(self.requests)} cancelled={self.cancelled_streams} "
                    f"in_flight={self.in_flight}"
                )
            await asyncio.sleep(0.005)

    # ---- handlers ----------------------------------------------------------------------------------

    async def _handle_models(self, request: web.Request) -> web.Response:
        data = [
            {
                "id": model,
                "name": model,
                "context_length": 128000,
                "pricing": {"prompt": str(PROMPT_PRICE), "completion": str(COMPLETION_PRICE)},
            }
            for model in self.models
        ]
        return web.json_response({"data": data})

    def _auth_error(self, request: web.Request) -> web.Response | None:
        if self.api_key is None:
            return None
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[len("Bearer ") :].strip():
            return web.json_response(_error_body(401, "No auth credentials found"), status=401)
        if header[len("Bearer ") :].strip() != self.api_key:
            return web.json_response(_error_body(401, "User not found."), status=401)
        return None

    def _next_action(self, model: str | None) -> Action:
        for index, (wanted, action) in enumerate(self._script):
            if wanted is None or wanted == model:
                del self._script[index]
                return action
        return self.default

    async def _handle_chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            headers=CIMultiDict(request.headers),
            json=body if isinstance(body, dict) else {},
            received_at=time.monotonic(),
        )
        self.requests.append(record)
        try:
            return await self._answer_chat(request, record, body)
        finally:
            record.finished_at = time.monotonic()

    async def _answer_chat(self, request: web.Request, record: RecordedRequest, body: Any) -> web.StreamResponse:
        response: web.StreamResponse | None = self._auth_error(request)
        if response is None and not isinstance(body, dict):
            response = web.json_response(_error_body(400, "Invalid JSON body"), status=400)
        if response is None and not record.messages:
            message = 'Input required: specify "prompt" or "messages"'
            response = web.json_response(_error_body(400, message), status=400)
        if response is not None:
            record.status = response.status
            return response

        action = self._next_action(record.model)
        record.action = action
        self.in_flight += 1
        self.max_concurrency = max(self.max_concurrency, self.in_flight)
        try:
            response = await self._perform(action, request, record)
        except asyncio.CancelledError:
            self._mark_cancelled(record)
            raise
        except _DroppedError:
            response = web.Response(status=_STATUS_DROPPED)
        except ConnectionResetError:
            self._mark_cancelled(record)
            response = web.Response(status=_STATUS_CLIENT_CLOSED)
        finally:
            self.in_flight -= 1
        record.status = response.status
        return response

    def _mark_cancelled(self, record: RecordedRequest) -> None:
        # Handlers are also cancelled when the server shuts down; that is not a client disconnect.
        record.status = _STATUS_CLIENT_CLOSED
        if self._closing is not None and self._closing.is_set():
            return
        record.cancelled = True
        self.cancelled_streams += 1

    async def _perform(self, action: Action, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        started = asyncio.get_running_loop().time()
        model = record.model or "openrouter/auto"
        match action:
            case Reply():
                text = action.text if action.text is not None else echo_text(record.messages)
                return await self._reply(request, record, action, text, started)
            case Error():
                headers = {}
                if action.retry_after is not None:
                    headers["Retry-After"] = f"{action.retry_after:g}"
                code = action.code if action.code is not None else action.status
                return web.json_response(
                    _error_body(code, action.message, action.metadata), status=action.status, headers=headers
                )
            case Moderation():
                slug = action.model_slug or model
                reasons = ", ".join(f'"{reason}"' for reason in action.reasons)
                message = (
                    f"{slug} requires moderation on {action.provider_name}. "
                    f"Your input was flagged for {reasons}. No credits were charged."
                )
                metadata = {
                    "reasons": list(action.reasons),
                    "flagged_input": action.flagged_input,
                    "provider_name": action.provider_name,
                    "model_slug": slug,
                }
                return web.json_response(_error_body(403, message, metadata), status=403)
            case ErrorBody200():
                error = _error_body(action.code, action.message, action.metadata)
                if not record.stream:
                    return web.json_response(error)
                stream = await self._open_stream(request)
                await stream.write(_sse(error))
                await stream.write_eof()
                return stream
            case MidStreamError():
                reply = Reply(text=action.after_text, ttft=action.ttft, tokens_per_second=action.tokens_per_second)
                error = _error_body(action.code, action.message)
                return await self._reply(request, record, reply, action.after_text, started, error=error)
            case Hang():
                headers_sent: web.StreamResponse | None = None
                if action.send_headers and record.stream:
                    headers_sent = await self._open_stream(request)
                assert self._closing is not None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), action.seconds)
                if self._closing.is_set():
                    if headers_sent is not None:
                        return headers_sent
                    return web.json_response(_error_body(503, "Server shutting down"), status=503)
                default = self.default if isinstance(self.default, Reply) else Reply()
                text = default.text if default.text is not None else echo_text(record.messages)
                return await self._reply(
                    request, record, default, text, asyncio.get_running_loop().time(), stream=headers_sent
                )
            case Drop():
                if record.stream and action.after_text:
                    stream = await self._open_stream(request)
                    chunk = self._chunk(record, model, {"role": "assistant", "content": action.after_text})
                    await stream.write(_sse(chunk))
                    if action.cleanly:
                        await stream.write_eof()
                        return stream
                assert request.transport is not None
                request.transport.abort()
                raise _DroppedError
        raise TypeError(f"unknown FakeLLM action: {action!r}")

    async def _open_stream(self, request: web.Request) -> web.StreamResponse:
        stream = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Generation-Id": f"gen-{uuid.uuid4().hex[:20]}",
            },
        )
        await stream.prepare(request)
        return stream

    def _chunk(
        self,
        record: RecordedRequest,
        model: str,
        delta: dict[str, Any],
        finish_reason: str | None = None,
        generation_id: str = "",
    ) -> dict[str, Any]:
        return {
            "id": generation_id or f"gen-{uuid.uuid4().hex[:20]}",
            "provider": "FakeProvider",
            "model": model,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "choices": [
                {
                    "index": 0,
                    "delta": delta,
                    "finish_reason": finish_reason,
                    "native_finish_reason": finish_reason,
                    "logprobs": None,
                }
            ],
        }

    async def _reply(
        self,
        request: web.Request,
        record: RecordedRequest,
        reply: Reply,
        text: str,
        started: float,
        *,
        error: dict[str, Any] | None = None,
        stream: web.StreamResponse | None = None,
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        model = reply.model or record.model or "openrouter/auto"
        tokens = split_tokens(text)
        size = max(1, reply.chunk_size)
        groups = ["".join(tokens[i : i + size]) for i in range(0, len(tokens), size)]
        prompt_tokens = reply.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = count_prompt_tokens(record.messages)
        completion_tokens = reply.completion_tokens if reply.completion_tokens is not None else len(tokens)
        usage = _usage(prompt_tokens, completion_tokens, reply.cost)
        finish_reason = "error" if error is not None else reply.finish_reason
        generation_id = f"gen-{uuid.uuid4().hex[:20]}"

        def due(group_index: int) -> float:
            # Absolute schedule, so many concurrent streams keep their rate without drift.
            first_token = group_index * size
            delay = reply.ttft
            if reply.tokens_per_second:
                delay += first_token / reply.tokens_per_second
            return started + delay

        if not record.stream:
            await asyncio.sleep(max(0.0, due(max(0, len(groups) - 1)) - loop.time()))
            completion: dict[str, Any] = {
                "id": generation_id,
                "provider": "FakeProvider",
                "model": model,
                "object": "chat.completion",
                "created": int(time.time()),
                "choices": [
                    {
                        "logprobs": None,
                        "finish_reason": finish_reason,
                        "native_finish_reason": finish_reason,
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None, "reasoning": None},
                    }
                ],
                "usage": usage,
            }
            if error is not None:
                completion.update(error)
            return web.json_response(completion)

        if stream is None:
            stream = await self._open_stream(request)
        if reply.keepalive_interval:
            while loop.time() + reply.keepalive_interval < due(0):
                await asyncio.sleep(reply.keepalive_interval)
                await stream.write(b": OPENROUTER PROCESSING\n\n")
        for index, group in enumerate(groups):
            await asyncio.sleep(max(0.0, due(index) - loop.time()))
            delta = {"role": "assistant", "content": group}
            await stream.write(_sse(self._chunk(record, model, delta, generation_id=generation_id)))
        if error is not None:
            chunk = self._chunk(record, model, {"role": "assistant", "content": ""}, "error", generation_id)
            chunk.update(error)
            await stream.write(_sse(chunk))
            await stream.write_eof()
            return stream
        await asyncio.sleep(max(0.0, due(0) - loop.time()))  # an empty reply still honours ttft
        final = self._chunk(record, model, {"role": "assistant", "content": ""}, finish_reason, generation_id)
        await stream.write(_sse(final))
        await asyncio.sleep(reply.usage_delay)
        if reply.drop_after_finish:
            assert request.transport is not None
            request.transport.abort()
            raise _DroppedError
        if self.always_usage or record.wants_usage:
            usage_chunk = self._chunk(record, model, {}, None, generation_id)
            usage_chunk["choices"] = []
            usage_chunk["usage"] = usage
            await stream.write(_sse(usage_chunk))
        await stream.write(_sse("[DONE]"))
        await stream.write_eof()
        self.completed_streams += 1
        return stream


# --------------------------------------------------------------------------------------------------
# Standalone process
# --------------------------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    llm = FakeLLM(
        api_key=args.api_key,
        ttft=args.ttft,
        tokens_per_second=args.tokens_per_second,
        chunk_size=args.chunk_size,
        always_usage=args.always_usage,
        host=args.host,
        port=args.port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with llm:
        print(llm.base_url, flush=True)
        await stop.wait()
        print(
            f"requests={llm.request_count} max_concurrency={llm.max_concurrency} "
            f"completed={llm.completed_streams} cancelled={llm.cancelled_streams}",
            file=sys.stderr,
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenRouter chat completions server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ttft", type=float, default=0.0, help="seconds before the first token")
    parser.add_argument("--tokens-per-second", type=float, default=None)
    parser.add_argument("--chunk-size", type=int, default=1, help="tokens per SSE chunk")
    parser.add_argument("--api-key", default=None, help="require this Bearer key")
    parser.add_argument("--always-usage", action="store_true", help="send usage even when not requested")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
