"""The fake servers as benchmark processes, each with a small ``/_bench/`` control API.

``python -m benchmarks.servers telegram --port 0 [--enforce-limits]`` runs ``FakeTelegram`` with a load generator
inside it: ``POST /_bench/load`` makes simulated users write to the bot in closed loops (write, wait for the whole
answer, think, write again) and returns one sample per message: when the update became available, when the first
visible text (draft or message) and the final answer arrived, and every Bot API call made for it. Keeping the
users next to the fake means an answer is noticed the moment its ``sendMessage`` arrives, with no polling. Once a
webhook is set, updates are POSTed to it over up to ``max_connections`` requests at once, as Telegram does.

``python -m benchmarks.servers llm --port 0`` runs ``FakeLLM`` whose replies follow a profile set with
``POST /_bench/profile`` (time to first token, token rate, length) and which records, per message tag, when the
request arrived and when the first token was written, so the model's own time can be subtracted exactly.

Both print their base URL on the first line of stdout and report event-loop lag (``GET /_bench/stats``), which
shows whether the fake itself was saturated. Times are ``time.monotonic()``: CLOCK_MONOTONIC, shared by every
process on the machine, so the driver can compare them across processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.openai_server import FakeLLM, RecordedRequest, Reply
from tests.fakes.telegram_server import ApiError, FakeTelegram, JsonDict

TOKEN = "123456:BENCH-token"
API_KEY = "sk-bench-key"
END_WORD = "fin"
"""The last word of every benchmark answer: an answer that ends with it arrived whole."""

VISIBLE_METHODS = frozenset({"sendmessage", "sendmessagedraft", "editmessagetext"})
OBSERVED_METHODS = (
    "sendmessage",
    "sendmessagedraft",
    "editmessagetext",
    "editmessagereplymarkup",
    "deletemessage",
    "sendchataction",
)

Handler = Callable[[JsonDict, dict[str, bytes]], Awaitable[Any]]


def message_tag(chat_id: int, index: int) -> str:
    """The first word of a benchmark message; the model's answer starts with it too."""
    return f"q{chat_id}x{index}"


# ---- event-loop lag ------------------------------------------------------------------------------------------


class LagMonitor:
    """Samples how late a 10 ms sleep wakes up: a saturated process wakes late."""

    PERIOD = 0.01

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def take(self) -> dict[str, float]:
        samples, self.samples = sorted(self.samples), []
        if not samples:
            return {"lag_p99_ms": 0.0, "lag_max_ms": 0.0}
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        return {"lag_p99_ms": p99 * 1000, "lag_max_ms": samples[-1] * 1000}

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.PERIOD)
            self.samples.append(max(0.0, time.monotonic() - before - self.PERIOD))


# ---- Telegram side -------------------------------------------------------------------------------------------


@dataclass
class LoadSpec:
    """Simulated users: ``chats`` private chats, each writing ``messages`` messages in a closed loop."""

    chats: int
    messages: int
    first_chat: int = 1_000_000
    words: int = 12
    """Words per user message (after the tag)."""
    think_min: float = 0.0
    think_max: float = 0.0
    """Pause between an answer and the next message, uniform in [think_min, think_max] seconds."""
    spread: float = 0.0
    """Each chat starts at a uniform random offset in [0, spread] seconds."""
    duration: float = 60.0
    """No message is sent after this many seconds; the run ends at ``duration + answer_timeout`` at most."""
    answer_timeout: float = 30.0
    seed: int = 1


@dataclass
class Sample:
    chat_id: int
    tag: str
    enqueued: float
    first_visible: float | None = None
    answered: float | None = None
    calls: Counter[str] = field(default_factory=Counter)
    floods: int = 0
    visible: list[float] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    def as_json(self) -> JsonDict:
        data = asdict(self)
        data["calls"] = dict(self.calls)
        return data


class BenchTelegram(FakeTelegram):
    """FakeTelegram that attributes every chat-scoped Bot API call to the message being answered in that chat."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lag = LagMonitor()
        self._current: dict[int, Sample] = {}
        self._done: dict[int, asyncio.Event] = {}
        self._in_flight: set[int] = set()
        self._deliveries: set[asyncio.Task[None]] = set()
        for method in OBSERVED_METHODS:
            self._handlers[method] = self._observed(method, self._handlers[method])

    def build_app(self) -> web.Application:
        app = super().build_app()
        app.router.add_route("POST", "/_bench/load", self._bench_load)
        app.router.add_route("GET", "/_bench/state", self._bench_state)
        app.router.add_route("GET", "/_bench/stats", self._bench_stats)
        return app

    async def _webhook_loop(self) -> None:
        """Deliver updates over up to ``max_connections`` requests at once, as Telegram does; FakeTelegram's own loop
        sends one at a time, so every update would wait for the bot to answer the one before it."""
        try:
            while self.webhook is not None and not self._closing:
                limit = int(self.webhook.get("max_connections") or 40)
                waiting = [u for u in self._pending() if u["update_id"] not in self._in_flight]
                if not waiting or len(self._in_flight) >= limit:
                    await self._changed.wait()
                    continue
                update = waiting[0]
                self._in_flight.add(update["update_id"])
                task = asyncio.create_task(self._deliver(update))
                self._deliveries.add(task)
                task.add_done_callback(self._deliveries.discard)
        finally:
            if self._closing:
                for task in list(self._deliveries):
                    task.cancel()

    async def _deliver(self, update: JsonDict) -> None:
        self._active_requests += 1
        try:
            status = await self.post_update_to_webhook(update)
            if 200 <= status < 300:
                self._confirm(update["update_id"])
            else:
                await asyncio.sleep(0.5)
        finally:
            self._active_requests -= 1
            self._in_flight.discard(update["update_id"])
            self._notify(activity=False)

    def _observed(self, method: str, handler: Handler) -> Handler:
        async def observe(params: JsonDict, files: dict[str, bytes]) -> Any:
            arrived = self.calls[-1].time
            try:
                chat_id = int(params.get("chat_id"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return await handler(params, files)
            sample = self._current.get(chat_id)
            if sample is None:
                return await handler(params, files)
            sample.calls[method] += 1
            try:
                result = await handler(params, files)
            except ApiError as error:
                if error.error_code == 429:
                    sample.floods += 1
                raise
            if method in VISIBLE_METHODS:
                self._saw(sample, method, params, arrived)
            return result

        return observe

    def _saw(self, sample: Sample, method: str, params: JsonDict, arrived: float) -> None:
        text = str(params.get("text") or "")
        if not text:
            return  # an empty draft is the "Thinking…" placeholder
        sample.visible.append(arrived)
        if sample.first_visible is None:
            sample.first_visible = arrived
        if method == "sendmessagedraft" or params.get("reply_markup"):
            return
        if sample.tag in text and text.rstrip().endswith(END_WORD):
            sample.answered = arrived
        else:
            sample.refusals.append(text[:200])
        event = self._done.get(sample.chat_id)
        if event is not None:
            event.set()

    async def run_load(self, spec: LoadSpec) -> list[Sample]:
        rng = random.Random(spec.seed)
        samples: list[Sample] = []
        start = time.monotonic()
        filler = " ".join(f"word{i}" for i in range(spec.words))

        async def chat(chat_id: int, offset: float, thinks: list[float]) -> None:
            await asyncio.sleep(offset)
            done = self._done[chat_id] = asyncio.Event()
            for index in range(spec.messages):
                if time.monotonic() - start > spec.duration:
                    return
                tag = message_tag(chat_id, index)
                done.clear()
                sample = Sample(chat_id, tag, time.monotonic())
                self._current[chat_id] = sample
                samples.append(sample)
                self.user_message(chat_id, f"{tag} {filler}", first_name=f"U{chat_id}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), spec.answer_timeout)
                if sample.answered is None:
                    return
                await asyncio.sleep(thinks[index] if thinks else spec.think_min)

        chats = range(spec.first_chat, spec.first_chat + spec.chats)
        # A constant pause is not drawn: the throughput load asks for 100 000 messages per chat, and drawing a pause
        # for each (20 million for 200 chats) held this process for seconds, and 800 MB, as the load started.
        # Loads with a real range draw exactly as they always did.
        draw = spec.think_max != spec.think_min
        plans = [
            (
                rng.uniform(0, spec.spread),
                [rng.uniform(spec.think_min, spec.think_max) for _ in range(spec.messages)] if draw else [],
            )
            for _ in chats
        ]
        try:
            await asyncio.gather(*(chat(chat_id, *plan) for chat_id, plan in zip(chats, plans, strict=True)))
            # Calls that come after the final answer (none are expected) still belong to it for a moment.
            await asyncio.sleep(0.3)
        finally:
            for chat_id in chats:
                self._current.pop(chat_id, None)
                self._done.pop(chat_id, None)
        return samples

    async def _bench_load(self, request: web.Request) -> web.Response:
        spec = LoadSpec(**await request.json())
        self.lag.take()
        samples = await self.run_load(spec)
        return web.json_response({"samples": [s.as_json() for s in samples], **self.lag.take()})

    async def _bench_state(self, request: web.Request) -> web.Response:
        polls = sum(1 for call in self.calls if call.method.lower() == "getupdates")
        return web.json_response({"get_updates": polls, "calls": len(self.calls), "floods": self.flood_errors})

    async def _bench_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.lag.take())


# ---- model side ----------------------------------------------------------------------------------------------


@dataclass
class ReplyProfile:
    """Every answer: the message's tag, ``tokens - 2`` filler words and END_WORD."""

    ttft: float = 0.0
    tokens_per_second: float | None = None
    tokens: int = 12
    chunk_size: int = 1


class BenchLLM(FakeLLM):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.profile = ReplyProfile()
        self.lag = LagMonitor()
        # tag -> [request arrived, first token written]
        self.timings: dict[str, list[float | None]] = {}
        self._tags: dict[int, str] = {}

    async def start(self) -> BenchLLM:
        # FakeLLM.start with the control routes added to its app.
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for prefix in ("/api/v1", "/v1"):
            app.router.add_post(f"{prefix}/chat/completions", self._handle_chat)
            app.router.add_get(f"{prefix}/models", self._handle_models)
        app.router.add_post("/_bench/profile", self._bench_profile)
        app.router.add_get("/_bench/timings", self._bench_timings)
        app.router.add_get("/_bench/stats", self._bench_stats)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def _perform(self, action: Any, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        if not isinstance(action, Reply) or action is not self.default:
            return await super()._perform(action, request, record)
        started = asyncio.get_running_loop().time()
        words = record.last_user_text.split()
        tag = words[0] if words else "untagged"
        self.timings[tag] = [record.received_at, None]
        self._tags[id(record)] = tag
        profile = self.profile
        filler = [f"tok{i}" for i in range(max(profile.tokens - 2, 0))]
        text = " ".join([tag, *filler, END_WORD])
        reply = Reply(
            text=text,
            ttft=profile.ttft,
            tokens_per_second=profile.tokens_per_second,
            chunk_size=profile.chunk_size,
        )
        try:
            return await self._reply(request, record, reply, text, started)
        finally:
            self._tags.pop(id(record), None)

    def _chunk(
        self,
        record: RecordedRequest,
        model: str,
        delta: dict[str, Any],
        finish_reason: str | None = None,
        generation_id: str = "",
    ) -> dict[str, Any]:
        tag = self._tags.get(id(record))
        if tag is not None and delta.get("content"):
            timing = self.timings.get(tag)
            if timing is not None and timing[1] is None:
                timing[1] = time.monotonic()
        return super()._chunk(record, model, delta, finish_reason, generation_id)

    async def _bench_profile(self, request: web.Request) -> web.Response:
        self.profile = ReplyProfile(**await request.json())
        return web.json_response(asdict(self.profile))

    async def _bench_timings(self, request: web.Request) -> web.Response:
        timings, self.timings = self.timings, {}
        return web.json_response({"timings": timings})

    async def _bench_stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"requests": self.request_count, "max_concurrency": self.max_concurrency, **self.lag.take()}
        )


# ---- entry point ---------------------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.kind == "telegram":
        tg = BenchTelegram(token=TOKEN, port=args.port, enforce_limits=args.enforce_limits)
        async with tg:
            tg.lag.start()
            print(tg.base_url, flush=True)
            await stop.wait()
            await tg.lag.stop()
    else:
        llm = BenchLLM(api_key=API_KEY, port=args.port)
        async with llm:
            llm.lag.start()
            print(llm.base_url, flush=True)
            await stop.wait()
            await llm.lag.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake servers for the benchmarks")
    parser.add_argument("kind", choices=("telegram", "llm"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--enforce-limits", action="store_true", help="Telegram's published rate limits (429s)")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
