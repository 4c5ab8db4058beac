"""Several ``pomogator run web`` instances in webhook mode behind a round-robin forwarder, as in a scaled deployment.

::

    FakeTelegram --webhook--> RoundRobin (the load balancer) --> instance 0 | 1 | 2 --> FakeLLM
                                                                     \\--> PostgreSQL (through a TcpProxy), Redis

* ``RoundRobin`` passes each POST to the next instance; like nginx's ``proxy_next_upstream error http_503`` it
  tries the next one when an instance refuses the connection or answers 503. ``pin(update_id, index)`` sends one
  update to a chosen instance (and nowhere else), so a test can make ``/role`` land on one instance and the text
  on another.
* ``WebInstance`` is one process; ``terminate()`` is SIGTERM, ``kill()`` SIGKILL, ``start()`` again after either.
* ``Cluster.open`` starts the fakes, a PostgreSQL database of its own behind a proxy the test can ``cut()``, a Redis
  key prefix of its own, the instances, and registers the webhook with ``pomogator bot set-webhook``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp
import httpx
from aiohttp import web

from tests.bot.harness import base_env, bot_command
from tests.conftest import TEST_API_KEY
from tests.databases import throwaway_postgres
from tests.fakes.openai_server import FakeLLM
from tests.fakes.tcp_proxy import TcpProxy
from tests.fakes.telegram_server import FakeTelegram
from tests.scale.redis_support import REDIS_URL, redis_prefix
from tests.web.support import free_port

TOKEN = "123456:TEST-token"
SECRET = "scale-test-secret_0123456789-0123456789abcdefghijklmnopqrstuv"
WEBHOOK_PATH = "/webhooks/telegram"
LOCK_TTL_S = 2.0
# How long the instances wait for a database that refuses connections before telling users it is unavailable.
RECONNECT_S = 2.0
START_TIMEOUT_S = 60.0


class RoundRobin:
    """The load balancer in front of the instances (see the module docstring)."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self.pins: dict[int, int] = {}
        # update id -> the instance that accepted it (2xx)
        self.accepted: dict[int, int] = {}
        self._next = itertools.cycle(range(len(backends)))
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pin(self, update_id: int, index: int) -> None:
        self.pins[update_id] = index

    async def start(self) -> Self:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("POST", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        update_id = int(json.loads(body).get("update_id", 0))
        pinned = self.pins.get(update_id)
        if pinned is not None:
            order = [pinned]
        else:
            first = next(self._next)
            order = [(first + step) % len(self.backends) for step in range(len(self.backends))]
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("x-telegram")}
        headers["Content-Type"] = "application/json"
        for index in order:
            try:
                async with self._session.post(
                    self.backends[index] + request.path, data=body, headers=headers, timeout=aiohttp.ClientTimeout(10)
                ) as response:
                    status, payload = response.status, await response.read()
            except (aiohttp.ClientError, TimeoutError):
                continue
            if status == 503:
                continue
            if 200 <= status < 300:
                self.accepted[update_id] = index
            return web.Response(status=status, body=payload)
        return web.Response(status=502)


class WebInstance:
    """One ``pomogator run web`` process in webhook mode."""

    def __init__(self, index: int, env: dict[str, str], workdir: Path) -> None:
        self.index = index
        self.port = free_port()
        self.env = {**env, "POMOGATOR_WEB_HOST": "127.0.0.1", "POMOGATOR_WEB_PORT": str(self.port)}
        self.log_path = workdir / f"web-{index}.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *bot_command(),
                "run",
                "web",
                env=self.env,
                cwd=str(self.log_path.parent),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        async with httpx.AsyncClient() as client:
            while True:
                if not self.alive:
                    raise RuntimeError(f"instance {self.index} exited during start-up:\n{self.log()[-5000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url + "/healthz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"instance {self.index} did not start:\n{self.log()[-5000:]}")
                await asyncio.sleep(0.1)

    async def terminate(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def kill(self) -> None:
        assert self.process is not None
        if self.alive:
            self.process.kill()
        await self.process.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return ""


class Cluster:
    def __init__(
        self,
        workdir: Path,
        tg: FakeTelegram,
        llm: FakeLLM,
        database_url: str,
        proxy: TcpProxy,
        prefix: str,
        size: int,
    ) -> None:
        self.workdir = workdir
        self.tg = tg
        self.llm = llm
        self.database_url = database_url
        self.proxy = proxy
        self.prefix = prefix
        self.env = self._env()
        self.instances = [WebInstance(i, self.env, workdir) for i in range(size)]
        self.balancer = RoundRobin([instance.url for instance in self.instances])
        self._chat_ids = itertools.count(50_001)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, workdir: Path, postgres_server_url: str, size: int = 3) -> AsyncIterator[Cluster]:
        async with (
            FakeTelegram(token=TOKEN) as tg,
            FakeLLM(api_key=TEST_API_KEY) as llm,
            throwaway_postgres(postgres_server_url, "pomogator_bot") as database_url,
            redis_prefix() as prefix,
        ):
            target = urlsplit(database_url)
            proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
            cluster = cls(workdir, tg, llm, database_url, proxy, prefix, size)
            await cluster.balancer.start()
            try:
                await asyncio.gather(*(instance.start() for instance in cluster.instances))
                yield cluster
            finally:
                for instance in cluster.instances:
                    if instance.alive:
                        with contextlib.suppress(TimeoutError):
                            await instance.terminate()
                    if instance.alive:
                        await instance.kill()
                await cluster.balancer.close()
                proxy.close()

    def _env(self) -> dict[str, str]:
        env = base_env()
        env.update(
            {
                "POMOGATOR_BOT_TOKEN": TOKEN,
                "POMOGATOR_TELEGRAM_API_URL": self.tg.base_url,
                "POMOGATOR_TELEGRAM_WEBHOOK_SECRET": SECRET,
                "POMOGATOR_OPENROUTER_API_KEY": TEST_API_KEY,
                "POMOGATOR_OPENROUTER_BASE_URL": self.llm.base_url,
                "POMOGATOR_OPENROUTER_MAX_RETRIES": "0",
                "POMOGATOR_DATABASE_URL": self.proxy.url(self.database_url),
                "POMOGATOR_DATABASE_RECONNECT_SECONDS": str(RECONNECT_S),
                "POMOGATOR_REDIS_URL": REDIS_URL,
                "POMOGATOR_REDIS_KEY_PREFIX": self.prefix,
                "POMOGATOR_REDIS_LOCK_TTL_SECONDS": str(LOCK_TTL_S),
                "POMOGATOR_YOOKASSA_SHOP_ID": "100500",
                "POMOGATOR_YOOKASSA_SECRET_KEY": "test_not_used",
                "POMOGATOR_REMINDER_INTERVAL_SECONDS": "0",
                "POMOGATOR_LOG_LEVEL": "INFO",
                "POMOGATOR_SHUTDOWN_GRACE_SECONDS": "15",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    @property
    def webhook_url(self) -> str:
        return self.balancer.url + WEBHOOK_PATH

    def new_chat(self) -> int:
        return next(self._chat_ids)

    def pinned_message(self, chat_id: int, text: str, index: int) -> int:
        """A user message delivered to instance ``index`` only; returns its update id."""
        update_id = self.tg.user_message(chat_id, text)
        self.balancer.pin(update_id, index)
        return update_id

    def pin_last_update(self, index: int) -> int:
        """Send the update just queued (a button press, a stopped draft) to instance ``index``."""
        update_id = int(self.tg.pending_updates[-1]["update_id"])
        self.balancer.pin(update_id, index)
        return update_id

    async def all_delivered(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        await self.tg.wait_until(lambda: not self.tg.pending_updates, timeout, "every update delivered")

    def logs(self) -> str:
        return "\n".join(f"===== instance {i.index} =====\n{i.log()[-15000:]}" for i in self.instances)


def update_json(update_id: int, chat_id: int, text: str) -> dict[str, Any]:
    """A private text message update as Telegram would POST it."""
    user = {"id": chat_id, "is_bot": False, "first_name": "Test"}
    message: dict[str, Any] = {
        "message_id": update_id % 1_000_000,
        "date": int(time.time()),
        "chat": {"id": chat_id, "type": "private", "first_name": "Test"},
        "from": user,
        "text": text,
    }
    if text.startswith("/"):
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return {"update_id": update_id, "message": message}
