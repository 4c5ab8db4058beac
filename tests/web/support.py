"""Helpers for billing tests: settings wired to the fakes, the web app served by uvicorn (in the test's loop or as a
``pomogator run web`` process), a TCP proxy that can cut the database off, and a database per web process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from pomogator.config import Settings
from pomogator.container import Services
from pomogator.services.users import Person
from tests.conftest import make_settings
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.yookassa_server import FakeYooKassa

USER_ID = 4242
ADMIN_ID = 777
POMOGATOR = str(Path(sys.executable).with_name("pomogator"))
WEBHOOK = "/webhooks/yookassa"


def billing_settings(db_url: str, kassa: FakeYooKassa, tg: FakeTelegram, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "yookassa_shop_id": kassa.shop_id,
        "yookassa_secret_key": kassa.secret_key,
        "yookassa_api_url": kassa.api_url,
        "yookassa_timeout": 2.0,
        "yookassa_trusted_networks": "127.0.0.1",
        "bot_token": tg.token,
        "telegram_api_url": tg.base_url,
        "admin_ids": str(ADMIN_ID),
        "offer_url": "https://example.ru/offer",
        "privacy_url": "https://example.ru/privacy",
        "payment_return_url": "https://example.ru/paid",
        "reminder_interval_seconds": 0,
        "payment_check_interval_seconds": 0,
    }
    values.update(overrides)
    return make_settings(**values)


def billing_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment for a ``pomogator`` process with the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POMOGATOR_")}
    for name in (
        "database_url",
        "yookassa_shop_id",
        "yookassa_api_url",
        "yookassa_timeout",
        "yookassa_trusted_networks",
        "telegram_api_url",
        "admin_ids",
        "openrouter_api_key",
        "offer_url",
        "privacy_url",
        "reminder_interval_seconds",
        "payment_check_interval_seconds",
        "web_trusted_proxies",
    ):
        value = getattr(settings, name)
        if value is not None:
            env[f"POMOGATOR_{name.upper()}"] = str(
                value.get_secret_value() if hasattr(value, "get_secret_value") else value
            )
    assert settings.yookassa_secret_key is not None and settings.bot_token is not None
    env["POMOGATOR_YOOKASSA_SECRET_KEY"] = settings.yookassa_secret_key.get_secret_value()
    env["POMOGATOR_BOT_TOKEN"] = settings.bot_token.get_secret_value()
    env["POMOGATOR_LOG_LEVEL"] = "INFO"
    env.update(overrides)
    return env


async def add_user(services: Services, tg: FakeTelegram, telegram_id: int = USER_ID) -> None:
    await services.users.touch(Person(telegram_id, "Ann"))
    tg.add_chat(telegram_id)
    tg.add_chat(ADMIN_ID)


async def until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:  # noqa: ASYNC109
    """Wait for ``predicate()`` to hold, checking every 10 ms."""
    for _ in range(int(timeout * 100)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{what} not reached within {timeout}s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_in_loop(app: Any, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn inside the running loop; yields its base URL."""
    config = uvicorn.Config(app, host=host, port=0, log_config=None, proxy_headers=False, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before starting")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task


def notification(kassa: FakeYooKassa, event: str, object_id: str) -> dict[str, Any]:
    return kassa.notification(event, object_id)


class WebProcess:
    """``pomogator run web`` in a subprocess."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        self.env = {**env, "POMOGATOR_WEB_HOST": "127.0.0.1", "POMOGATOR_WEB_PORT": str(self.port)}
        self.cwd = cwd
        self.process: asyncio.subprocess.Process | None = None
        self.log_path = cwd / f"web-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30.0) -> WebProcess:  # noqa: ASYNC109
        log = self.log_path.open("wb")
        self.process = await asyncio.create_subprocess_exec(
            POMOGATOR, "run", "web", cwd=self.cwd, env=self.env, stdout=log, stderr=asyncio.subprocess.STDOUT
        )
        log.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient() as client:
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(f"pomogator run web exited: {self.log()}")
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(self.url + "/healthz")
                    if response.status_code in (200, 503):
                        return self
                if loop.time() > deadline:
                    raise TimeoutError(f"web process did not start: {self.log()}")
                await asyncio.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def stop(self) -> int:
        if self.process is None or self.process.returncode is not None:
            return self.process.returncode if self.process and self.process.returncode is not None else 0
        self.process.terminate()
        try:
            return await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()
