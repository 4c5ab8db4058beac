"""The OpenRouter client: streaming chat completions through the official openai SDK, errors made domain errors."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import orjson
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
    exception_chain,
)

# The openai SDK is imported where it is used: importing it takes ~0.4 s and ~20 MiB, which the CLI's admin commands
# and the web app, who import this module through the services, never need.

Message = dict[str, Any]
STREAM_ERROR = "An error occurred during streaming"


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class TextComplete:
    """The model has written its whole text (a choice carried ``finish_reason``); usage and the stream's end
    may still follow."""


@dataclass(frozen=True, slots=True)
class Finished:
    """The stream ended; ``usage`` is what OpenRouter reported in its last chunk (none when the connection failed
    after the text was complete)."""

    usage: Usage
    finish_reason: str | None


StreamEvent = Delta | TextComplete | Finished


# What OpenRouter says of a model it no longer serves: 400 "<id> is not a valid model ID", 404 "No endpoints found for
# <id>". Its other "No endpoints found ..." refusals are about the request or the account, below.
MODEL_GONE = re.compile(r"is not a valid model id|no endpoints found for \S+/\S", re.IGNORECASE)
# 404 "No endpoints found matching your data policy" (or "... your guardrail restrictions and data policy"): the
# account's privacy settings leave the model no provider.
DATA_POLICY_SIGN = "data policy"
# 404 "No endpoints found that support image input" (tool use, the requested output modalities, ...): no provider
# of the model takes a request like this one.
NO_ENDPOINTS_SIGN = "no endpoints"
# 403 "Key limit exceeded (total limit)" (or daily, weekly, monthly): the spend limit set on our key.
KEY_LIMIT_SIGN = "key limit exceeded"
# 429 "Rate limit exceeded: free-models-per-day": the account's allowance of ``:free`` models, spent until tomorrow.
FREE_DAILY_SIGN = "free-models-per-day"
# A model refused in the country the request comes from: OpenRouter's own 403 "This model is not available in your
# region.", or a provider's words in the error's ``metadata.raw`` (OpenAI's 403 "unsupported_country_region_territory",
# Google's 400 "User location is not supported for the API use.").
REGION_SIGNS = (
    "not available in your region",
    "not available in your country",
    "unsupported_country_region_territory",
    "country, region, or territory not supported",
    "user location is not supported",
)
# How much of a provider's raw error goes into the detail (logs and alerts).
RAW_DETAIL_CHARS = 500


def error_for_status(status: int | None, message: str, metadata: object = None) -> LLMError:
    """Map an HTTP-like status from OpenRouter, its message and the error's ``metadata`` to the domain error users
    are told about. The detail is the message, with the provider's own words (``metadata.raw``) when it passed them
    on."""
    upstream = _upstream_words(metadata)
    detail = f"{message} ({upstream})" if upstream else message
    said = f"{message} {upstream}".lower()
    if status in (401, 402):
        return LLMAccountProblem(detail)
    if status in (400, 403, 451) and any(sign in said for sign in REGION_SIGNS):
        return LLMRegionBlocked(detail)
    if status == 403:
        if _moderation(metadata):
            return LLMModerated(detail)
        if KEY_LIMIT_SIGN in said:
            return LLMAccountProblem(detail)
        # A refusal OpenRouter did not explain: not moderation, and asking again the same way will not help.
        return LLMUnavailable(detail)
    if status == 408:
        return LLMTimeout(detail)
    if status == 429:
        return LLMAccountProblem(detail) if FREE_DAILY_SIGN in said else LLMRateLimited(detail)
    if status in (400, 404):
        if MODEL_GONE.search(message):
            return LLMModelGone(detail)
        if DATA_POLICY_SIGN in said:
            return LLMAccountProblem(detail)
        if NO_ENDPOINTS_SIGN in said:
            return LLMBadRequest(detail)
    if status in (400, 413, 422):
        return LLMBadRequest(detail)
    return LLMUnavailable(detail)


def _moderation(metadata: object) -> bool:
    """Whether an error is OpenRouter's moderation refusal, which names what was flagged and why."""
    return isinstance(metadata, dict) and ("reasons" in metadata or "flagged_input" in metadata)


def _upstream_words(metadata: object) -> str:
    """The provider's own error that OpenRouter passed on (``metadata.raw``, text or JSON), after its name."""
    if not isinstance(metadata, dict):
        return ""
    raw = metadata.get("raw")
    if raw is None or raw == "":
        return ""
    text = raw if isinstance(raw, str) else orjson.dumps(raw, default=str).decode()
    text = " ".join(text.split())[:RAW_DETAIL_CHARS]
    provider = metadata.get("provider_name")
    return f"{provider}: {text}" if isinstance(provider, str) and provider else text


def _error_code(body: object) -> int | None:
    if isinstance(body, dict):
        code = body.get("code")
        if isinstance(code, int):
            return code
        if isinstance(code, str) and code.isdigit():
            return int(code)
        nested = body.get("error")
        if nested is not None:
            return _error_code(nested)
    return None


def _error_metadata(body: object) -> object:
    if isinstance(body, dict):
        if "metadata" in body:
            return body["metadata"]
        nested = body.get("error")
        if nested is not None:
            return _error_metadata(nested)
    return None


def _error_message(body: object, fallback: str) -> str:
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str):
            return message
        nested = body.get("error")
        if nested is not None:
            return _error_message(nested, fallback)
    return fallback


def _lost_connection(exc: BaseException) -> bool:
    """Whether aiohttp's failure under ``exc`` was a refused, reset or dropped connection, not a timeout.

    The SDK reports failures as its own errors, timeouts apart; the transport's error and aiohttp's under it are
    kept as causes (``pomogator.llm.transport``).
    """
    import aiohttp

    return any(
        isinstance(seen, aiohttp.ClientConnectionError) and not isinstance(seen, aiohttp.ServerTimeoutError)
        for seen in exception_chain(exc)
    )


def translate(exc: Exception) -> LLMError:
    """Turn any openai/httpx failure into an LLMError."""
    import openai

    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError) and _lost_connection(exc):
        return LLMUnavailable(f"connection: {type(exc).__name__}")
    if isinstance(exc, openai.APITimeoutError):
        return LLMTimeout("timeout")
    if isinstance(exc, openai.APIConnectionError):
        return LLMUnavailable(f"connection: {type(exc).__name__}")
    if isinstance(exc, openai.APIStatusError):
        return error_for_status(exc.status_code, _error_message(exc.body, exc.message), _error_metadata(exc.body))
    if isinstance(exc, openai.APIError):
        # An error event inside a 200 stream: OpenRouter puts the real status in the body's code.
        return error_for_status(_error_code(exc.body), _error_message(exc.body, exc.message), _error_metadata(exc.body))
    # While the stream is read, failures come from the SDK's HTTP client itself, as they would inside the SDK.
    timeouts, request_errors = _transport_errors()
    if isinstance(exc, request_errors) and _lost_connection(exc):
        return LLMUnavailable(f"connection: {type(exc).__name__}")
    if isinstance(exc, timeouts):
        return LLMTimeout("timeout")
    if isinstance(exc, request_errors):
        return LLMUnavailable(f"connection: {type(exc).__name__}")
    return LLMUnavailable(type(exc).__name__)


def _transport_errors() -> tuple[type[Exception], type[Exception]]:
    """Timeouts and other request errors of the HTTP client the openai SDK uses."""
    import httpx2

    return httpx2.TimeoutException, httpx2.RequestError


def _usage_from(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    cost = raw.get("cost")
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
        cost=Decimal(str(cost)) if cost is not None else None,
    )


async def _sse_data(chunks: AsyncGenerator[bytes, None], silence: float) -> AsyncGenerator[bytes, None]:
    """The data of each server-sent event in a byte stream; comments (OpenRouter's keep-alives), ``event:`` and
    ``id:`` lines are skipped. Lines end with LF, CRLF or CR, as the SSE format allows.

    Raises LLMTimeout once ``silence`` seconds of waiting bring nothing but keep-alives: they reset the connection's
    read timeout, so a model stuck before its first word (or in the middle) would otherwise be waited for as long as
    OpenRouter keeps the request open. Time the consumer spends between events does not count.

    ``chunks`` is closed with this generator: left to the garbage collector, an unfinished async generator is
    closed by a task the event loop schedules through its self-pipe (a wake-up and a task per answer).
    """
    pending = b""
    data: list[bytes] = []
    clock = asyncio.get_running_loop().time
    waiting_since = clock()
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            lines = (pending + chunk).splitlines(keepends=True)
            # An unterminated last line waits for the rest; so does a lone CR, which an LF may follow next.
            pending = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
            events = _events(lines, data)
            if not events:
                if clock() - waiting_since > silence:
                    raise LLMTimeout(f"nothing but keep-alives for {silence:g} s")
                continue
            for event in events:
                yield event
            waiting_since = clock()
    # The stream's end ends its last line and its last event.
    for event in _events([pending, b""], data):
        yield event


def _events(lines: list[bytes], data: list[bytes]) -> list[bytes]:
    """The events ``lines`` complete; ``data`` holds the data lines of the event still open."""
    events = []
    for line in lines:
        line = line.rstrip(b"\r\n")
        if not line:
            if data:
                events.append(b"\n".join(data))
                data.clear()
        elif line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
    return events


class LLMClient:
    """Streams chat completions from OpenRouter (or any OpenAI-compatible server)."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: float,
        max_retries: int,
        app_url: str,
        app_title: str,
    ) -> None:
        import openai

        from pomogator.llm.transport import AiohttpTransport
        from pomogator.tls import client_ssl

        limits = openai.DEFAULT_CONNECTION_LIMITS
        # Streaming through aiohttp takes about half the CPU per answer of the SDK's default httpx2 transport.
        transport = AiohttpTransport(
            client_ssl(), max_connections=limits.max_connections or 100, keepalive_expiry=limits.keepalive_expiry
        )
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            max_retries=max_retries,
            timeout=timeout,
            # OpenRouter's app attribution; without an app URL the app is not attributed by it.
            default_headers={"HTTP-Referer": app_url, "X-Title": app_title} if app_url else {"X-Title": app_title},
            http_client=openai.DefaultAsyncHttpxClient(transport=transport, timeout=timeout),
        )
        self._silence = timeout
        # Absolute, so the SDK does not parse and join it with its base URL on every request (~30 µs).
        self._completions_url = str(self._client.base_url).rstrip("/") + "/chat/completions"

    async def close(self) -> None:
        await self._client.close()

    async def stream(self, model: str, messages: list[Message], max_tokens: int) -> AsyncIterator[StreamEvent]:
        """Yield Delta events, one TextComplete once a choice says why it ended, then one Finished. Raises LLMError
        subclasses.

        The SDK makes the request (retries, timeouts, status errors); the stream's events are read here, as plain
        JSON (orjson): read through the SDK's decoder and its model for every chunk, a streamed answer took twice
        the CPU.
        An error object inside the stream is treated as the SDK's ``APIError`` with that body would be. Once the text
        is complete, a failure of the connection (or its silence) while the usage and the stream's end are awaited
        is logged, and the stream finishes with the usage known by then.
        """
        import httpx2
        from openai import AsyncStream

        usage = Usage()
        finish_reason: str | None = None
        received = complete = done = False
        # An error the stream itself reported, as opposed to a failure of the connection carrying it.
        reported: LLMError | None = None
        body = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "usage": {"include": True},
        }
        try:
            # The SDK's generic request method, not ``chat.completions.create``: that one first walks its ~40
            # parameters against their type declarations, ~5 % of the bot's CPU per answer under load. The body
            # here is plain JSON already; the request itself, its retries, timeouts, authentication and errors are
            # the SDK's as before. ``stream`` leaves the body unread; asking for the plain HTTP response, the events
            # are read here.
            # (The SDK's typing says a streamed request gives ``stream_cls``; with ``cast_to`` the plain response,
            # it gives that response.)
            response = cast(
                "httpx2.Response",
                await self._client.post(
                    self._completions_url,
                    cast_to=httpx2.Response,
                    # The body encoded here: a dict the SDK would encode with the standard library's json (~30 µs
                    # for a short dialog, against ~1 µs with orjson). The Content-Type is the client's JSON default.
                    content=orjson.dumps(body),
                    # The client's own timeout and retries, and no extra headers or query, given as values: left
                    # out, the SDK deep-copies its placeholders for them on every request (~20 µs each).
                    options={
                        "security": {"bearer_auth": True},
                        "headers": {},
                        "params": {},
                        "timeout": self._client.timeout,
                        "max_retries": self._client.max_retries,
                    },
                    stream=True,
                    stream_cls=AsyncStream[httpx2.Response],
                ),
            )
            async with (
                contextlib.aclosing(response) as response,
                contextlib.aclosing(_sse_data(response.aiter_bytes(), self._silence)) as events,
            ):
                async for data in events:
                    if data.startswith(b"[DONE]"):
                        done = True
                        break
                    chunk = orjson.loads(data)
                    if not isinstance(chunk, dict):
                        continue
                    error = chunk.get("error")
                    if error:
                        reported = error_for_status(
                            _error_code(error), _error_message(error, STREAM_ERROR), _error_metadata(error)
                        )
                        raise reported
                    if chunk.get("usage"):
                        usage = _usage_from(chunk["usage"])
                    for choice in chunk.get("choices") or ():
                        if choice.get("finish_reason"):
                            finish_reason = choice["finish_reason"]
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            received = True
                            yield Delta(text)
                    if finish_reason == "error":
                        reported = error_for_status(_error_code(chunk), "finish_reason=error")
                        raise reported
                    if finish_reason is not None and not complete:
                        complete = True
                        yield TextComplete()
        except Exception as exc:
            failure = exc if isinstance(exc, LLMError) else translate(exc)
            failure.model_id = model
            if not complete or failure is reported:
                if failure is exc:
                    raise
                raise failure from exc
            # The text is whole and OpenRouter has billed it: a connection lost, or silent past the timeout, while
            # the usage and the stream's end were awaited leaves only the usage unknown.
            logger.warning(
                "The answer of {} is complete, but its stream then failed ({}: {}); kept with the usage known so far",
                model,
                type(failure).__name__,
                failure.detail,
            )
        if not received and finish_reason is None:
            # A 200 response carrying an error object instead of a stream ends here with nothing in it.
            raise LLMUnavailable("empty response")
        if finish_reason is None and not done:
            # Closed mid-answer without an error (a proxy or provider giving up): not an answer to keep or charge.
            raise LLMUnavailable("the stream ended before the answer did")
        yield Finished(usage=usage, finish_reason=finish_reason)
