"""``python -m benchmarks.run [--quick] [--db sqlite|postgres|both] [--mode polling|webhook|both]``: how fast and how
cheap Pomogator is.

Runs the real bot process against the fake Bot API (``benchmarks.servers telegram``) and the fake OpenRouter
(``benchmarks.servers llm``), each in a process of its own, and prints one table column per database and mode:

1. added latency: update available → first visible text in the chat, minus the model's own time to first token,
   at 1, 50 and 200 concurrent chats;
2. throughput with an instant model: answered messages per second and bot CPU seconds per answer;
3. Telegram calls and 429s per 3-second streamed answer with the fake enforcing Telegram's limits;
4. database round trips per chat message (PostgreSQL: a counting proxy; SQLite: statements, via a launcher);
5. bot RSS idle and peak, next to ``import aiogram`` alone; cold start of the CLI; the web app's idle RSS and
   that neither the CLI nor the web app imports aiogram.

The bot is started through a ``BotMode``. Polling: ``pomogator run bot``. Webhook: ``pomogator run web`` with
``POMOGATOR_TELEGRAM_WEBHOOK_SECRET`` set, registered with ``pomogator bot set-webhook`` once ``/healthz`` answers
(the fake then POSTs every update to it) and removed with ``deleteWebhook`` before it stops; in webhook mode every
"bot" figure (CPU, RSS) is that web process's. Each database and mode gets a fresh database; the start-up probes run
once.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from benchmarks import proc
from benchmarks.contexts import seed_contexts
from benchmarks.pgproxy import CountingProxy
from benchmarks.servers import API_KEY, TOKEN
from tests.databases import database_at, throwaway_postgres

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0

# Limits of the benchmark's own users: the flood guard and daily quotas still run on every message, they just never
# refuse one (a refusal is not an answer and would not measure the answer path).
MODELS_TOML = """\
default = "openai/gpt-4o-mini"
[[models]]
id = "openai/gpt-4o-mini"
title = "GPT-4o mini"
free_daily = 1000000
premium_daily = 1000000
vision = true
context_length = 128000
max_output_tokens = 4096
"""

# The bot gives freed memory back every minute by default; here every few seconds, so that "idle after the load" is
# read, a few seconds after the load, as a minute of idleness leaves it.
TRIM_SECONDS = 5

# What `pomogator run web` needs besides the bot's settings. Nothing listens at the API URL: the web app never calls
# YooKassa unless a notification arrives.
WEB_APP_ENV = {
    "POMOGATOR_YOOKASSA_SHOP_ID": "123456",
    "POMOGATOR_YOOKASSA_SECRET_KEY": "test_dummy_secret",
    "POMOGATOR_YOOKASSA_API_URL": "http://127.0.0.1:9/v3",
}


# ---- configuration of one run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyModel:
    """The model and the users of the latency scenarios (``--ttft``, ``--tokens``, ``--rate``, ``--think``)."""

    ttft: float
    tokens: int
    rate: float
    think_min: float
    think_max: float

    @property
    def stream_seconds(self) -> float:
        return (self.tokens - 1) / self.rate

    @property
    def cycle(self) -> float:
        """Seconds from one message of a chat to its next one, bot time aside."""
        return self.ttft + self.stream_seconds + (self.think_min + self.think_max) / 2

    def describe(self) -> str:
        return (
            f"model: first token after {self.ttft:g} s, {self.tokens} tokens at {self.rate:g}/s; "
            f"users write again {self.think_min:g}-{self.think_max:g} s after an answer"
        )


@dataclass(frozen=True)
class Plan:
    """Sizes of every scenario; ``--quick`` shrinks them to a smoke run. The latency model and users are options."""

    latency_chats: tuple[int, ...]
    latency_messages: dict[int, int]
    throughput_chats: int
    throughput_seconds: float
    throughput_warmup: float
    stream_chats: int
    stream_messages: int
    round_trip_chats: int
    round_trip_messages: int
    probe_repeats: int
    latency_model: LatencyModel
    settle: float
    """Seconds to let a process settle before its memory is read."""

    @classmethod
    def full(cls) -> Plan:
        return cls(
            latency_chats=(1, 50, 200),
            latency_messages={1: 10, 50: 5, 200: 4},
            throughput_chats=200,
            throughput_seconds=20.0,
            throughput_warmup=3.0,
            stream_chats=10,
            stream_messages=3,
            round_trip_chats=20,
            round_trip_messages=3,
            probe_repeats=5,
            latency_model=LatencyModel(ttft=0.5, tokens=41, rate=20.0, think_min=1.0, think_max=3.0),
            settle=2.0,
        )

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            latency_chats=(1, 50, 200),
            latency_messages={1: 2, 50: 1, 200: 1},
            throughput_chats=100,
            throughput_seconds=4.0,
            throughput_warmup=1.0,
            stream_chats=3,
            stream_messages=1,
            round_trip_chats=5,
            round_trip_messages=2,
            probe_repeats=1,
            latency_model=LatencyModel(ttft=0.3, tokens=11, rate=40.0, think_min=0.3, think_max=0.8),
            settle=1.0,
        )


# ---- processes ---------------------------------------------------------------------------------------------------


def pomogator_command() -> list[str]:
    """The ``pomogator`` console script next to this interpreter, as users run it."""
    script = Path(sys.executable).with_name("pomogator")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from pomogator.console import main; main()"]


def clean_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("POMOGATOR_", "BENCH_"))}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class Child:
    """A child process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, *, first_line: bool = False) -> str:
        """Start; with ``first_line``, wait for and return the first line of stdout (the fakes print their URL)."""
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                cwd=self.workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if first_line else log,
                stderr=log,
            )
        if not first_line:
            return ""
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), START_TIMEOUT)
        if not line:
            raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
        return line.decode().strip()

    async def stop(self, timeout: float = 20.0) -> None:  # noqa: ASYNC109
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class Fakes:
    """The fake Bot API (with or without Telegram's limits) and the fake model, each in its own process."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[Child] = []
        self.http: aiohttp.ClientSession | None = None
        self.telegram_url = ""
        self.limited_telegram_url = ""
        self.llm_url = ""

    async def __aenter__(self) -> Fakes:
        env = clean_env()
        module = [sys.executable, "-m", "benchmarks.servers"]
        telegram = Child("fake-telegram", [*module, "telegram"], env, self.workdir)
        limited = Child("fake-telegram-limited", [*module, "telegram", "--enforce-limits"], env, self.workdir)
        llm = Child("fake-llm", [*module, "llm"], env, self.workdir)
        self.children = [telegram, limited, llm]
        self.telegram_url, self.limited_telegram_url, self.llm_url = await asyncio.gather(
            telegram.start(first_line=True), limited.start(first_line=True), llm.start(first_line=True)
        )
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.http is not None:
            await self.http.close()
        await asyncio.gather(*(child.stop() for child in self.children))

    @property
    def llm_root(self) -> str:
        return self.llm_url.removesuffix("/api/v1")

    def pid(self, name: str) -> int:
        return next(child.pid for child in self.children if child.name == name)

    async def get(self, url: str) -> Any:
        assert self.http is not None
        async with self.http.get(url) as response:
            response.raise_for_status()
            return await response.json()

    async def post(self, url: str, body: dict[str, Any]) -> Any:
        assert self.http is not None
        async with self.http.post(url, json=body) as response:
            response.raise_for_status()
            return await response.json()

    async def set_reply(self, *, ttft: float, tokens: int, rate: float | None) -> None:
        body = {"ttft": ttft, "tokens": tokens, "tokens_per_second": rate}
        await self.post(f"{self.llm_root}/_bench/profile", body)

    async def llm_timings(self) -> dict[str, list[float | None]]:
        data: dict[str, list[float | None]] = (await self.get(f"{self.llm_root}/_bench/timings"))["timings"]
        return data

    async def load(self, telegram_url: str, **spec: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.post(f"{telegram_url}/_bench/load", spec)
        return result

    async def llm_lag(self) -> dict[str, float]:
        """How late the fake model's event loop ran since the last call (p99 and max, ms)."""
        stats: dict[str, float] = await self.get(f"{self.llm_root}/_bench/stats")
        return {"lag_p99_ms": stats["lag_p99_ms"], "lag_max_ms": stats["lag_max_ms"]}

    async def polls(self, telegram_url: str) -> int:
        return int((await self.get(f"{telegram_url}/_bench/state"))["get_updates"])


# ---- how the bot receives updates --------------------------------------------------------------------------------


class BotMode:
    """How the bot process is started, how the driver knows it takes updates, and what is undone when it stops.

    The load generator does not care: the fake Bot API queues every update with ``push_update``, which serves
    ``getUpdates`` and, once a webhook is set, posts the update to it.
    """

    name = "abstract"
    description = ""
    """The bot's command, for the table."""
    process = "bot"
    """What the measured process is, for the figures that name it."""

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self, workdir: Path) -> dict[str, str]:
        return {}

    async def wait_ready(self, fakes: Fakes, telegram_url: str, polls_before: int, bot: Child) -> None:
        raise NotImplementedError

    async def release(self, fakes: Fakes, telegram_url: str, bot: Child) -> None:
        """Called before the bot is stopped: leave the fake Bot API as the next bot expects it."""


class PollingMode(BotMode):
    name = "polling"
    description = "`pomogator run bot` (long polling)"

    def argv(self) -> list[str]:
        return ["run", "bot"]

    async def wait_ready(self, fakes: Fakes, telegram_url: str, polls_before: int, bot: Child) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while await fakes.polls(telegram_url) <= polls_before:
            if bot.process is not None and bot.process.returncode is not None:
                raise RuntimeError(f"the bot exited with {bot.process.returncode}:\n{bot.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the bot did not poll within {START_TIMEOUT}s:\n{bot.log_tail()}")
            await asyncio.sleep(0.05)


class WebhookMode(BotMode):
    """``pomogator run web`` with a webhook secret serves the bot; once ``/healthz`` answers, ``pomogator bot
    set-webhook`` registers its URL with the fake Bot API, which then POSTs every update to it."""

    name = "webhook"
    description = "`pomogator run web` with a webhook secret (the fake Bot API POSTs each update to it)"
    process = "web app serving the bot"

    def argv(self) -> list[str]:
        return ["run", "web"]

    def env(self, workdir: Path) -> dict[str, str]:
        return WEB_APP_ENV | {
            "POMOGATOR_WEB_HOST": "127.0.0.1",
            "POMOGATOR_WEB_PORT": str(_free_port()),
            "POMOGATOR_TELEGRAM_WEBHOOK_SECRET": secrets.token_urlsafe(24),
        }

    @staticmethod
    def _base_url(bot: Child) -> str:
        return f"http://{bot.env['POMOGATOR_WEB_HOST']}:{bot.env['POMOGATOR_WEB_PORT']}"

    async def wait_ready(self, fakes: Fakes, telegram_url: str, polls_before: int, bot: Child) -> None:
        await _wait_healthy(f"{self._base_url(bot)}/healthz", bot)
        # As a deployment does it (the command also asks for the update types the handlers use); the secret and
        # the fake's URL come from the bot's own environment.
        argv = [*pomogator_command(), "bot", "set-webhook", f"{self._base_url(bot)}/webhooks/telegram"]
        result = await asyncio.to_thread(proc.run_with_peak, argv, bot.env, bot.workdir)
        if result.code != 0:
            raise RuntimeError(f"set-webhook exited {result.code}:\n{result.stderr.strip()[-2000:]}")

    async def release(self, fakes: Fakes, telegram_url: str, bot: Child) -> None:
        # The fake is reused by the next bot: a polling one would remove the webhook itself, but until then the fake
        # would keep delivering to a process that is gone.
        await fakes.post(f"{telegram_url}/bot{TOKEN}/deleteWebhook", {"drop_pending_updates": False})


MODES: dict[str, BotMode] = {mode.name: mode for mode in (PollingMode(), WebhookMode())}
SCENARIOS = ("probes", "latency", "throughput", "context", "memory", "streaming", "roundtrips")


# ---- databases -----------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database_url(kind: str, workdir: Path, postgres_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one run: an SQLite file, or a PostgreSQL database dropped at the end."""
    from pomogator.store.engine import Database

    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'bench.sqlite3'}"
        database = Database(url)
        await database.start(migrate=True)
        await database.close()
        yield url
        return
    async with throwaway_postgres(postgres_url, "pomogator_bench") as url:
        yield url


# ---- statistics --------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Figures:
    """Everything measured for one database and mode (one column of the table)."""

    column: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, value: str, key: str | None = None, raw: Any = None) -> None:
        self.rows.append((name, value))
        print(f"  {name}: {value}", flush=True)
        if key is not None:
            self.data[key] = raw


# ---- the bench ---------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.plan = Plan.quick() if args.quick else Plan.full()
        self.workdir = workdir
        self.fakes: Fakes
        """The fake servers of the column in progress (``run``)."""
        self.mode = MODES["polling"]
        """The mode of the run in progress (``run``)."""
        default = self.plan.latency_model
        self.latency = LatencyModel(
            ttft=default.ttft if args.ttft is None else args.ttft,
            tokens=default.tokens if args.tokens is None else args.tokens,
            rate=default.rate if args.rate is None else args.rate,
            think_min=default.think_min if args.think is None else args.think[0],
            think_max=default.think_max if args.think is None else args.think[1],
        )
        self.models_file = workdir / "models.toml"
        self.models_file.write_text(MODELS_TOML)
        self._chat_base = 1_000_000

    def next_chats(self, count: int) -> int:
        """The first id of ``count`` chat ids nobody used in this run (every scenario has new users)."""
        first = self._chat_base
        self._chat_base += max(count, 1000)
        return first

    def bot_env(self, url: str, telegram_url: str, **extra: str) -> dict[str, str]:
        env = clean_env()
        env.update(
            {
                "POMOGATOR_BOT_TOKEN": TOKEN,
                "POMOGATOR_TELEGRAM_API_URL": telegram_url,
                "POMOGATOR_OPENROUTER_API_KEY": API_KEY,
                "POMOGATOR_OPENROUTER_BASE_URL": self.fakes.llm_url,
                "POMOGATOR_OPENROUTER_MAX_RETRIES": "0",
                "POMOGATOR_DATABASE_URL": url,
                "POMOGATOR_MODELS_FILE": str(self.models_file),
                "POMOGATOR_FLOOD_MESSAGES_PER_MINUTE": "1000000",
                "POMOGATOR_SHUTDOWN_GRACE_SECONDS": "5",
                "POMOGATOR_MEMORY_TRIM_SECONDS": str(TRIM_SECONDS),
            }
        )
        env.update(self.mode.env(self.workdir))
        env.update(extra)
        return env

    @contextlib.asynccontextmanager
    async def bot(
        self, name: str, url: str, telegram_url: str, *, launcher: bool = False, **extra: str
    ) -> AsyncIterator[Child]:
        command = [sys.executable, "-m", "benchmarks.launch"] if launcher else pomogator_command()
        bot = Child(name, [*command, *self.mode.argv()], self.bot_env(url, telegram_url, **extra), self.workdir)
        polls = await self.fakes.polls(telegram_url)
        await bot.start()
        try:
            await self.mode.wait_ready(self.fakes, telegram_url, polls, bot)
            yield bot
        finally:
            try:
                await self.mode.release(self.fakes, telegram_url, bot)
            finally:
                await bot.stop()

    # -- scenarios

    async def warm_up(self, telegram_url: str) -> None:
        """One message answered before measuring: the first one of a process opens connections and fills caches."""
        await self.fakes.set_reply(ttft=0.0, tokens=12, rate=None)
        await self.fakes.load(telegram_url, chats=1, messages=1, first_chat=self.next_chats(1))
        await self.fakes.llm_timings()

    async def added_latency(self, figures: Figures, telegram_url: str, bot: Child) -> None:
        plan, model = self.plan, self.latency
        await self.fakes.set_reply(ttft=model.ttft, tokens=model.tokens, rate=model.rate)
        figures.add("latency scenarios", model.describe())
        for chats in plan.latency_chats:
            messages = plan.latency_messages[chats]
            # Chats start spread over one cycle, so they do not all write in the same instant.
            cpu_before = proc.cpu_seconds(bot.pid)
            await self.fakes.llm_lag()  # forget what came before
            result = await self.fakes.load(
                telegram_url,
                chats=chats,
                messages=messages,
                first_chat=self.next_chats(chats),
                think_min=model.think_min,
                think_max=model.think_max,
                spread=model.cycle if chats > 1 else 0.0,
                duration=model.cycle * messages + 30.0,
            )
            cpu = proc.cpu_seconds(bot.pid) - cpu_before
            llm_lag = await self.fakes.llm_lag()
            timings = await self.fakes.llm_timings()
            added: list[float] = []
            missing = 0
            for sample in result["samples"]:
                received, first_token = timings.get(sample["tag"]) or (None, None)
                if sample["first_visible"] is None or sample["answered"] is None or received is None or not first_token:
                    missing += 1
                    continue
                model_ttft = first_token - received
                added.append((sample["first_visible"] - sample["enqueued"] - model_ttft) * 1000)
            samples = result["samples"]
            span = max(s["enqueued"] for s in samples) - min(s["enqueued"] for s in samples) if samples else 0.0
            offered = len(samples) / span if span > 0 else 0.0
            if missing:
                figures.failures.append(f"latency at {chats} chats: {missing} message(s) not answered")
            # How late the fakes' own event loops ran (p99 / max): a saturated or paused fake delays what is measured
            # here.
            lag = (
                f"{result['lag_p99_ms']:.0f} / {result['lag_max_ms']:.0f} ms Bot API, "
                f"{llm_lag['lag_p99_ms']:.0f} / {llm_lag['lag_max_ms']:.0f} model"
            )
            figures.add(
                f"added latency, {chats} chat{'s' if chats > 1 else ''} (p50 / p95 / p99 / max, ms)",
                f"{percentile(added, 50):.1f} / {percentile(added, 95):.1f} / {percentile(added, 99):.1f} / "
                f"{max(added, default=float('nan')):.1f}; n={len(added)}"
                + (f" ({offered:.0f} msg/s)" if chats > 1 else "")
                + f"; bot CPU {cpu / max(len(added), 1) * 1000:.1f} ms/answer"
                + f"; the fakes' loop lag (p99 / max) {lag}"
                + (f", {missing} unanswered" if missing else ""),
                f"latency_{chats}",
                {
                    "p50": percentile(added, 50),
                    "p95": percentile(added, 95),
                    "p99": percentile(added, 99),
                    "max": max(added, default=None),
                    "n": len(added),
                    "missing": missing,
                    "messages_per_second": offered,
                    "cpu_ms_per_answer": cpu / max(len(added), 1) * 1000,
                    "fake_telegram_lag_p99_ms": result["lag_p99_ms"],
                    "fake_telegram_lag_max_ms": result["lag_max_ms"],
                    "fake_llm_lag_p99_ms": llm_lag["lag_p99_ms"],
                    "fake_llm_lag_max_ms": llm_lag["lag_max_ms"],
                },
            )

    async def throughput(self, figures: Figures, telegram_url: str, bot: Child) -> None:
        await self._throughput(figures, telegram_url, bot, self.next_chats(self.plan.throughput_chats))

    async def context_throughput(self, figures: Figures, url: str, telegram_url: str, bot: Child) -> None:
        """The throughput scenario again, every chat starting with a long stored context (``--context-turns``)."""
        turns = self.args.context_turns
        first_chat = self.next_chats(self.plan.throughput_chats)
        chars = await seed_contexts(url, first_chat, self.plan.throughput_chats, turns)
        await self._throughput(
            figures, telegram_url, bot, first_chat, context=f"{turns} stored turns each ({chars // 1000} k characters)"
        )

    async def _throughput(
        self, figures: Figures, telegram_url: str, bot: Child, first_chat: int, *, context: str = ""
    ) -> None:
        plan = self.plan
        # The context scenario's figures are named apart: ", 100 stored turns each (...)" and keys "..._context".
        named, key = (f", {context}", "_context") if context else ("", "")
        await self.fakes.set_reply(ttft=0.0, tokens=12, rate=None)
        pids = {
            "bot": bot.pid,
            "fake Bot API": self.fakes.pid("fake-telegram"),
            "fake LLM": self.fakes.pid("fake-llm"),
        }
        load = asyncio.create_task(
            self.fakes.load(
                telegram_url,
                chats=plan.throughput_chats,
                messages=100_000,
                first_chat=first_chat,
                spread=0.2,
                duration=plan.throughput_seconds,
                answer_timeout=10.0,
            )
        )
        await asyncio.sleep(plan.throughput_warmup)
        start, cpu_start, machine_start = time.monotonic(), self._cpu(pids), proc.machine_cpu_seconds()
        if self.args.py_spy:
            # Sampling the bot costs it a little CPU; the figures of a profiled run are not the ones to keep.
            seconds = max(1, int(plan.throughput_seconds - plan.throughput_warmup - 1))
            spy = Child(
                "py-spy",
                [
                    shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")),
                    "record",
                    "--nonblocking",
                    "-p",
                    str(bot.pid),
                    "-d",
                    str(seconds),
                    "-r",
                    "100",
                    "-f",
                    "raw",
                    "-o",
                    f"{self.args.py_spy}.{figures.column.replace(' ', '-')}{key.replace('_', '-')}.txt",
                ],
                clean_env(),
                self.workdir,
            )
            await spy.start()
        await asyncio.sleep(plan.throughput_seconds - plan.throughput_warmup - 0.3)
        end, cpu_end, machine_end = time.monotonic(), self._cpu(pids), proc.machine_cpu_seconds()
        result = await load
        await self.fakes.llm_timings()  # forget them
        answered = [s for s in result["samples"] if s["answered"] is not None and start <= s["answered"] <= end]
        refused = sum(1 for s in result["samples"] if s["refusals"])
        window = end - start
        rate = len(answered) / window
        bot_cpu = cpu_end["bot"] - cpu_start["bot"]
        per_answer_ms = bot_cpu / len(answered) * 1000 if answered else float("nan")
        usage = ", ".join(
            f"{self.mode.process if name == 'bot' else name} {(cpu_end[name] - cpu_start[name]) / window * 100:.0f}%"
            for name in pids
        )
        machine = (machine_end - machine_start) / window * 100
        if not answered:
            figures.failures.append(f"throughput{named}: no answers")
        if refused:
            figures.failures.append(f"throughput{named}: {refused} refusal(s) instead of answers")
        figures.add(
            f"throughput, instant model, {plan.throughput_chats} chats{named} (answers/s)",
            f"{rate:.0f}",
            f"throughput{key}",
            rate,
        )
        figures.add(f"bot CPU per answer{named} (ms)", f"{per_answer_ms:.2f}", f"cpu_per_answer_ms{key}", per_answer_ms)
        figures.add(
            f"CPU use during the throughput window{named} (of one core)",
            f"{usage}; whole machine {machine:.0f}% of {(os.cpu_count() or 1) * 100}%",
            f"cpu_use{key}",
            {name: (cpu_end[name] - cpu_start[name]) / window for name in pids} | {"machine": machine / 100},
        )
        if context:
            return
        calls: Counter[str] = Counter()
        for sample in answered:
            calls.update(sample.get("calls") or {})
        figures.add(
            "Telegram calls per answer, instant model (mean)",
            f"{sum(calls.values()) / max(len(answered), 1):.2f} ("
            + ", ".join(f"{m.lower()} {n / max(len(answered), 1):.2f}" for m, n in sorted(calls.items()))
            + ")",
            "throughput_calls",
            {m: n / max(len(answered), 1) for m, n in calls.items()},
        )

    @staticmethod
    def _cpu(pids: dict[str, int]) -> dict[str, float]:
        return {name: proc.cpu_seconds(pid) for name, pid in pids.items()}

    async def streaming(self, figures: Figures, url: str) -> None:
        """Telegram calls per 3-second streamed answer with the fake enforcing Telegram's limits."""
        plan = self.plan
        telegram_url = self.fakes.limited_telegram_url
        async with self.bot("bot-limited", url, telegram_url):
            # 61 tokens: the first after 0.5 s, then 20 a second, so the last one comes 3 s after the first.
            await self.fakes.set_reply(ttft=0.5, tokens=61, rate=20.0)
            result = await self.fakes.load(
                telegram_url,
                chats=plan.stream_chats,
                messages=plan.stream_messages,
                first_chat=self.next_chats(plan.stream_chats),
                think_min=1.0,
                think_max=2.0,
                spread=plan.settle,
                duration=60.0,
            )
        await self.fakes.llm_timings()
        samples = [s for s in result["samples"] if s["answered"] is not None]
        missing = len(result["samples"]) - len(samples)
        if missing:
            figures.failures.append(f"streaming: {missing} message(s) not answered")
        calls = [sum(s["calls"].values()) for s in samples]
        floods = sum(s["floods"] for s in result["samples"])
        methods: Counter[str] = Counter()
        for s in samples:
            methods.update(s["calls"])
        visible = [len(s["visible"]) for s in samples]
        gaps = [b - a for s in samples for a, b in zip(s["visible"], s["visible"][1:], strict=False)]
        per_second = max((_most_in_a_second(s["visible"]) for s in samples), default=0)
        breakdown = ", ".join(f"{m} {n / max(len(samples), 1):.1f}" for m, n in sorted(methods.items()))
        figures.add(
            "Telegram calls per 3-second streamed answer (mean / max)",
            f"{statistics.mean(calls) if calls else float('nan'):.1f} / {max(calls, default=0)} ({breakdown})",
            "calls_per_answer",
            {"mean": statistics.mean(calls) if calls else None, "max": max(calls, default=None), "by": dict(methods)},
        )
        figures.add(
            "visible updates per answer (mean); closest two (s); most in one second",
            f"{statistics.mean(visible) if visible else float('nan'):.1f}; {min(gaps, default=float('nan')):.2f}; "
            f"{per_second}",
            "visible",
            {"mean": statistics.mean(visible) if visible else None, "min_gap": min(gaps, default=None)},
        )
        figures.add(
            f"429s with Telegram's limits on ({plan.stream_chats} chats x {plan.stream_messages} answers)",
            str(floods),
            "floods",
            floods,
        )

    async def round_trips(self, figures: Figures, url: str, kind: str) -> None:
        """Database round trips per chat message: a new user's first message, then later messages."""
        plan = self.plan
        await self.fakes.set_reply(ttft=0.0, tokens=12, rate=None)
        telegram_url = self.fakes.telegram_url
        first_chat = self.next_chats(plan.round_trip_chats)
        if kind == "postgres":
            async with CountingProxy(*_host_port(url)) as proxy:
                proxied = database_at(url, urlsplit(url).path.lstrip("/"), proxy.port)
                async with self.bot("bot-roundtrips", proxied, telegram_url):
                    first, later = await self._two_phases(first_chat, lambda: proxy.round_trips)
            unit = "round trips"
        else:
            counts_path = self.workdir / "sqlite-counts.json"

            def statements() -> int:
                return int(json.loads(counts_path.read_text())["statements"])

            async with self.bot(
                "bot-statements", url, telegram_url, launcher=True, BENCH_SQLITE_COUNTS=str(counts_path)
            ):
                await asyncio.sleep(0.3)
                first, later = await self._two_phases(first_chat, statements)
            unit = "statements"
        await self.fakes.llm_timings()
        figures.add(
            "database round trips per message (SQLite: statements): new user's first / later messages",
            f"{first:.1f} / {later:.1f} {unit}",
            "round_trips",
            {"first": first, "later": later, "unit": unit},
        )

    async def _two_phases(self, first_chat: int, count: Any) -> tuple[float, float]:
        plan = self.plan
        await self.warm_up(self.fakes.telegram_url)
        # The database log sink flushes once a second; let it write what start-up logged, then measure idle.
        await asyncio.sleep(1.3)
        idle_start, idle_at = count(), time.monotonic()
        await asyncio.sleep(plan.settle / 2)
        idle_rate = (count() - idle_start) / (time.monotonic() - idle_at)
        results = []
        for messages in (1, plan.round_trip_messages):
            before, at = count(), time.monotonic()
            result = await self.fakes.load(
                self.fakes.telegram_url,
                chats=plan.round_trip_chats,
                messages=messages,
                first_chat=first_chat,
                think_min=0.05,
                think_max=0.1,
                duration=60.0,
            )
            await asyncio.sleep(1.3)  # the log records of these messages reach the database
            answered = sum(1 for s in result["samples"] if s["answered"] is not None)
            spent = count() - before - idle_rate * (time.monotonic() - at)
            results.append(spent / max(answered, 1))
        return results[0], results[1]

    def memory_after_contexts(self, figures: Figures, bot: Child) -> None:
        after = proc.memory_mib(bot.pid)
        figures.add(
            "bot RSS after the long-context load: peak (VmHWM) / idle (MiB)",
            f"{after['VmHWM']:.1f} / {after['VmRSS']:.1f}",
            "bot_rss_context",
            {"peak": after["VmHWM"], "after": after["VmRSS"]},
        )

    async def memory_and_user_show(self, figures: Figures, url: str, bot: Child, idle: dict[str, float]) -> None:
        after = proc.memory_mib(bot.pid)
        figures.add(
            "bot RSS (webhook mode: the web app serving the bot): idle after start / peak (VmHWM) / idle after the "
            "load (MiB)",
            f"{idle['VmRSS']:.1f} / {after['VmHWM']:.1f} / {after['VmRSS']:.1f}",
            "bot_rss",
            {"idle": idle["VmRSS"], "peak": after["VmHWM"], "after": after["VmRSS"]},
        )
        env = clean_env() | {"POMOGATOR_DATABASE_URL": url}
        user = self._chat_base - 1000  # a user of the last scenario
        runs = [
            await asyncio.to_thread(
                proc.run_with_peak, [*pomogator_command(), "user", "show", str(user), "--json"], env, self.workdir
            )
            for _ in range(self.plan.probe_repeats)
        ]
        failed = [r for r in runs if r.code != 0]
        if failed:
            figures.failures.append(f"user show failed: {failed[0].stderr.strip()[-300:]}")
        seconds = statistics.median(r.seconds for r in runs)
        figures.add(
            "`pomogator user show` (median s; peak MiB)",
            f"{seconds:.2f}; {max(r.peak_mib for r in runs):.0f}",
            "user_show",
            seconds,
        )

    async def run(self, kind: str, mode: BotMode, fakes: Fakes) -> Figures:
        """Every scenario on a fresh database of ``kind`` with the bot started in ``mode``, against ``fakes``."""
        self.mode = mode
        self.fakes = fakes
        figures = Figures(f"{kind} {mode.name}")
        print(f"\n== {figures.column} ==", flush=True)
        figures.add("bot process", mode.description)
        async with database_url(kind, self.workdir, self.args.postgres_url) as url:
            telegram_url = self.fakes.telegram_url
            only = self.args.only
            if {"latency", "throughput", "context", "memory"} & only:
                async with self.bot("bot", url, telegram_url) as bot:
                    await asyncio.sleep(self.plan.settle)
                    idle = proc.memory_mib(bot.pid)
                    await self.warm_up(telegram_url)
                    if "latency" in only:
                        await self.added_latency(figures, telegram_url, bot)
                    if "throughput" in only:
                        await self.throughput(figures, telegram_url, bot)
                    if "memory" in only:
                        await asyncio.sleep(self.plan.settle + TRIM_SECONDS)
                        await self.memory_and_user_show(figures, url, bot, idle)
                    if "context" in only:
                        await self.context_throughput(figures, url, telegram_url, bot)
                        if "memory" in only:
                            await asyncio.sleep(self.plan.settle + TRIM_SECONDS)
                            self.memory_after_contexts(figures, bot)
            if "streaming" in only:
                await self.streaming(figures, url)
            if "roundtrips" in only:
                await self.round_trips(figures, url, kind)
        return figures


def _most_in_a_second(times: list[float]) -> int:
    best = 0
    start = 0
    for end, moment in enumerate(times):
        while moment - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5432


# ---- start-up and import probes -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def imports_aiogram(argv: list[str], env: dict[str, str], workdir: Path) -> bool:
    """Whether ``python -X importtime`` shows aiogram among what ``argv`` (a pomogator command) imported."""
    result = proc.run_with_peak([sys.executable, "-X", "importtime", "-m", "pomogator", *argv], env, workdir)
    return any(line.split("|")[-1].strip().startswith("aiogram") for line in result.stderr.splitlines() if "|" in line)


def compile_project() -> None:
    """Compile Pomogator's modules to bytecode, as pip does when it installs the wheel (the image).

    Every other package the processes import (aiogram in the floor measurement among them) is compiled already; an
    editable install under ``PYTHONDONTWRITEBYTECODE=1`` (this machine's environment) would otherwise compile ours
    from source at every start: slower starts, and ~1.3 MiB more RSS that the deployed bot does not have.
    """
    for package in ("pomogator", "piccolo_migrations"):
        if not compileall.compile_dir(ROOT / package, quiet=1):
            raise SystemExit(f"cannot compile {package}")


async def probes(plan: Plan, workdir: Path, figures: Figures) -> None:
    env = clean_env() | {"POMOGATOR_DATABASE_URL": f"sqlite:///{workdir / 'probe.sqlite3'}"}
    # The database the probes use, made as a deployment makes it: admin commands do not create one, and the web
    # app's measure is that of a process on a migrated database, not of one that migrates a new file at start.
    migrated = await asyncio.to_thread(proc.run_with_peak, [*pomogator_command(), "db", "migrate"], env, workdir)
    if migrated.code != 0:
        figures.failures.append(f"db migrate exited {migrated.code}: {migrated.stderr.strip()[-300:]}")

    def measure(argv: list[str]) -> tuple[float, float]:
        runs = [proc.run_with_peak(argv, env, workdir) for _ in range(plan.probe_repeats)]
        for run in runs:
            if run.code != 0:
                figures.failures.append(f"{' '.join(argv[-2:])} exited {run.code}: {run.stderr.strip()[-300:]}")
        return statistics.median(r.seconds for r in runs), max(r.peak_mib for r in runs)

    floor_s, floor_mib = await asyncio.to_thread(measure, [sys.executable, "-c", "import aiogram"])
    figures.add(
        "floor: `python -c 'import aiogram'` (median s; peak MiB)",
        f"{floor_s:.2f}; {floor_mib:.1f}",
        "import_aiogram",
        {"seconds": floor_s, "mib": floor_mib},
    )
    help_s, help_mib = await asyncio.to_thread(measure, [*pomogator_command(), "--help"])
    figures.add("`pomogator --help` (median s; peak MiB)", f"{help_s:.2f}; {help_mib:.1f}", "help", {"seconds": help_s})
    cli_aiogram = await asyncio.to_thread(imports_aiogram, ["user", "show", "1", "--json"], env, workdir)
    help_aiogram = await asyncio.to_thread(imports_aiogram, ["--help"], env, workdir)
    figures.add(
        "CLI imports aiogram (`--help`, `user show`)",
        f"{'yes' if help_aiogram else 'no'}, {'yes' if cli_aiogram else 'no'}",
        "cli_aiogram",
        help_aiogram or cli_aiogram,
    )
    await web_probe(workdir, env, figures, plan.settle)


async def web_probe(workdir: Path, env: dict[str, str], figures: Figures, settle: float) -> None:
    """``pomogator run web`` with dummy YooKassa credentials: idle RSS once /healthz answers; aiogram imported?"""
    port = _free_port()
    web_env = {
        **env,
        **WEB_APP_ENV,
        "POMOGATOR_WEB_PORT": str(port),
        "POMOGATOR_BOT_TOKEN": TOKEN,
        "POMOGATOR_TELEGRAM_API_URL": "http://127.0.0.1:9",
        "POMOGATOR_REMINDER_INTERVAL_SECONDS": "0",
        # Configured as in a deployment that shares one .env between the bot and the web app.
        "POMOGATOR_OPENROUTER_API_KEY": API_KEY,
    }
    for importtime in (False, True):
        prefix = [sys.executable, "-X", "importtime", "-m", "pomogator"] if importtime else pomogator_command()
        web = Child("web-importtime" if importtime else "web", [*prefix, "run", "web"], web_env, workdir)
        await web.start()
        try:
            await _wait_healthy(f"http://127.0.0.1:{port}/healthz", web)
            if importtime:
                await asyncio.sleep(0.5)
                imported = any(
                    line.split("|")[-1].strip().startswith("aiogram")
                    for line in web.log_path.read_text(errors="replace").splitlines()
                    if line.startswith("import time:")
                )
                figures.add("web app imports aiogram", "yes" if imported else "no", "web_aiogram", imported)
            else:
                await asyncio.sleep(settle)
                rss = proc.memory_mib(web.pid)
                figures.add(
                    "web app RSS idle / peak (MiB)",
                    f"{rss['VmRSS']:.1f} / {rss['VmHWM']:.1f}",
                    "web_rss",
                    rss["VmRSS"],
                )
        finally:
            await web.stop()


async def _wait_healthy(url: str, child: Child) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if child.process is not None and child.process.returncode is not None:
                raise RuntimeError(f"{child.name} exited:\n{child.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{url} not healthy within {START_TIMEOUT}s:\n{child.log_tail()}")


# ---- output -------------------------------------------------------------------------------------------------------


def table(all_figures: list[Figures]) -> str:
    """Markdown: one row per figure, one column per database (figures measured once go in every column)."""
    names: list[str] = []
    for figures in all_figures:
        for name, _ in figures.rows:
            if name not in names:
                names.append(name)
    header = "| figure | " + " | ".join(f.column for f in all_figures) + " |"
    lines = [header, "|---|" + "---|" * len(all_figures)]
    for name in names:
        cells = [dict(f.rows).get(name, "") for f in all_figures]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@contextlib.contextmanager
def work_directory(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pomogator-bench-"))
    try:
        yield path
    finally:
        if keep:
            print(f"logs kept in {path}", flush=True)
        else:
            shutil.rmtree(path, ignore_errors=True)


async def main_async(args: argparse.Namespace) -> int:
    started = time.monotonic()
    db = args.db or ("sqlite" if args.quick else "both")
    kinds = ["sqlite", "postgres"] if db == "both" else [db]
    mode = args.mode or ("polling" if args.quick else "both")
    modes = [MODES[name] for name in (MODES if mode == "both" else [mode])]
    machine = proc.machine()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()), flush=True)
    compile_project()
    with work_directory(args.keep) as workdir:
        bench = Bench(args, workdir)
        results: list[Figures] = []
        common = Figures("both")
        if "probes" in args.only:
            print("\n== start-up probes ==", flush=True)
            await probes(bench.plan, workdir, common)
        for kind in kinds:
            for bot_mode in modes:
                # New fake servers for every column: the fakes keep every call and request they were sent (the fake
                # model 1.6 GB by the last column of a full run), and a column is measured beside its own only.
                async with Fakes(workdir) as fakes:
                    results.append(await bench.run(kind, bot_mode, fakes))
    for figures in results:
        figures.rows.extend(common.rows)
    elapsed = time.monotonic() - started
    print(f"\nPomogator benchmarks ({'quick' if args.quick else 'full'}, {mode}), {elapsed:.0f} s\n")
    print(table(results))
    failures = [f"{f.column}: {failure}" for f in results for failure in f.failures] + common.failures
    for failure in failures:
        print(f"FAILED: {failure}")
    if args.json:
        data = {
            "machine": machine,
            "quick": args.quick,
            "mode": mode,
            "seconds": elapsed,
            "figures": {f.column: f.data | common.data for f in results},
            "failures": failures,
        }
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(data, indent=2, default=str))
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run, under a minute")
    parser.add_argument(
        "--db", choices=("sqlite", "postgres", "both"), help="which database (default: both; sqlite with --quick)"
    )
    parser.add_argument(
        "--mode",
        choices=(*MODES, "both"),
        help="how the bot gets updates (default: both; polling with --quick)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("POMOGATOR_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="a PostgreSQL server URL; the benchmark creates and drops a database of its own there",
    )
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (process logs)")
    parser.add_argument("--ttft", type=float, help="latency scenarios: model's time to first token, s (0.5)")
    parser.add_argument("--tokens", type=int, help="latency scenarios: tokens per answer (41)")
    parser.add_argument("--rate", type=float, help="latency scenarios: tokens per second (20)")
    parser.add_argument(
        "--think",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="latency scenarios: a user writes again MIN-MAX seconds (uniform) after an answer (1 3)",
    )
    parser.add_argument(
        "--context-turns",
        type=int,
        default=200,
        help="context scenario: turns stored for each chat before it writes (200, all the bot reads per message)",
    )
    parser.add_argument("--py-spy", metavar="PREFIX", help="profile the bot during the throughput runs (py-spy)")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run (default: all of {','.join(SCENARIOS)})",
    )
    args = parser.parse_args(argv)
    args.only = set(args.only.split(","))
    if args.only - set(SCENARIOS):
        parser.error(f"unknown scenario(s): {', '.join(sorted(args.only - set(SCENARIOS)))}")
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
