"""A Redis that refuses connections, goes silent or stops while the bot runs: messages are still answered, forms say
when they cannot open, and no message waits out timeout after timeout."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiogram.fsm.storage.base import DefaultKeyBuilder, StorageKey
from aiogram.fsm.storage.redis import RedisStorage
from loguru import logger
from redis.exceptions import RedisError

from pomogator.bot import texts
from pomogator.bot.redis_client import COMMAND_TIMEOUT_S, RETRY_AFTER_S, connect_redis
from pomogator.bot.redis_fsm import OutageTolerantStorage
from pomogator.bot.states import RoleForm
from pomogator.errors import FormUnavailable
from tests.bot.harness import BotHarness
from tests.fakes.tcp_proxy import TcpProxy
from tests.fakes.telegram_server import SentMessage

CLOSED_PORT_URL = "redis://127.0.0.1:1/0"
KEY = StorageKey(bot_id=1, chat_id=5, user_id=5)
FSM_WARNING = "conversation states read as none"
# A reply the bot gives at once when nothing waits on Redis; a loaded machine may take a few seconds.
PROMPT_S = 4.0
GENERIC_ERROR = "Что-то пошло не так"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def warnings_logged() -> Iterator[list[Any]]:
    """The records of the warnings logged meanwhile."""
    records: list[Any] = []
    sink = logger.add(lambda message: records.append(message.record), level="WARNING")
    try:
        yield records
    finally:
        logger.remove(sink)


# --- the storage and the client, without the bot ----------------------------------------------------------------


async def test_state_that_cannot_be_read_is_none_and_a_form_that_cannot_open_says_so() -> None:
    clock = Clock()
    redis = connect_redis(CLOSED_PORT_URL)
    storage = OutageTolerantStorage(RedisStorage(redis, key_builder=DefaultKeyBuilder(prefix="t")), clock=clock)
    try:
        with warnings_logged() as warnings:
            assert await storage.get_state(KEY) is None
            assert await storage.get_data(KEY) == {}
            # Ending a form loses nothing the user asked for: the message that ended it goes on.
            await storage.set_state(KEY, None)
            await storage.set_data(KEY, {})
            with pytest.raises(FormUnavailable):
                await storage.set_state(KEY, RoleForm.waiting)
            with pytest.raises(FormUnavailable):
                await storage.set_data(KEY, {"form_prompt": 7})
            assert len(warnings) == 1
            assert FSM_WARNING in warnings[0]["message"] and warnings[0]["exception"] is None
            clock.now += 61
            assert await storage.get_state(KEY) is None
            assert len(warnings) == 2
            assert "3 more failures since the last warning" in warnings[1]["message"]
    finally:
        await storage.close()


class SilentServer:
    """Accepts connections and never answers, as a host that has gone silent; ``refuse`` makes it close them."""

    def __init__(self) -> None:
        self.accepted = 0
        self.refusing = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> SilentServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.refusing:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while await reader.read(65536):
                pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()


async def test_a_silent_redis_costs_one_timeout_then_nothing_until_it_is_tried_again() -> None:
    async with SilentServer() as server:
        redis = connect_redis(server.url, retry_after=0.5)
        try:
            started = time.monotonic()
            with pytest.raises(RedisError):
                await redis.get("x")
            assert time.monotonic() - started < COMMAND_TIMEOUT_S + 1
            started = time.monotonic()
            for _ in range(20):
                with pytest.raises(RedisError):
                    await redis.get("x")
            # Not a timeout each (one would be 20 of them): refused at once, without connecting again.
            assert time.monotonic() - started < COMMAND_TIMEOUT_S
            assert server.accepted == 1
            await asyncio.sleep(0.6)
            server.refusing = True
            with pytest.raises(RedisError):
                await redis.get("x")
            assert server.accepted == 2
        finally:
            await redis.aclose()


# --- the bot --------------------------------------------------------------------------------------------------


async def reply_after(h: BotHarness, chat: int, text: str, timeout: float = PROMPT_S) -> list[SentMessage]:  # noqa: ASYNC109
    """Send ``text``; the bot's messages once it has replied and settled (the first within ``timeout``)."""
    after = h.last_message_id(chat)
    h.tg.user_message(chat, text)
    await h.tg.wait_for_message(chat, timeout=timeout, after_message_id=after)
    await h.settle(quiet=0.5)
    return h.messages_after(chat, after)


async def role_of(h: BotHarness, chat: int) -> str | None:
    async with h.services() as services:
        return (await services.users.ensure(chat)).role


def assert_told_to_try_later(replies: list[SentMessage]) -> None:
    """/role's prompt, then the notice that the form could not open."""
    assert len(replies) == 2
    assert "Роль" in (replies[0].text or "")
    assert replies[1].text == texts.FORM_UNAVAILABLE


@pytest.mark.slow
async def test_with_redis_refusing_connections_messages_are_answered_and_forms_say_to_try_later(
    tmp_path: Path,
) -> None:
    async with BotHarness.open(tmp_path, env={"POMOGATOR_REDIS_URL": CLOSED_PORT_URL}) as h:
        chat = h.new_chat()
        offset = h.bot.log_size()
        for text in ("привет", "как дела?"):
            [reply] = await reply_after(h, chat, text)
            assert reply.text == f"Echo: {text}"
        assert_told_to_try_later(await reply_after(h, chat, "/role"))
        # No form took it: the text goes to the model.
        [reply] = await reply_after(h, chat, "Ты юрист")
        assert reply.text == "Echo: Ты юрист"
        assert await role_of(h, chat) is None
        log = h.bot.log_since(offset)
        assert "Traceback" not in log
        assert log.count(FSM_WARNING) <= 1
        assert not any(GENERIC_ERROR in (m.text or "") for m in h.tg.sent_messages(chat))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    """A redis-server of the test's own (the machine's shared one is never stopped), without persistence."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self._process = await asyncio.create_subprocess_exec(
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()
        self._process = None


@contextlib.asynccontextmanager
async def private_redis(workdir: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(workdir)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.mark.slow
async def test_redis_that_stops_or_goes_silent_mid_way_only_costs_the_forms_meanwhile(tmp_path: Path) -> None:
    async with private_redis(tmp_path) as redis_server:
        proxy = TcpProxy("127.0.0.1", redis_server.port).start()
        try:
            url = proxy.url(f"redis://127.0.0.1:{redis_server.port}/0")
            async with BotHarness.open(tmp_path / "bot", env={"POMOGATOR_REDIS_URL": url}) as h:
                chat = h.new_chat()
                offset = h.bot.log_size()
                # Redis up: the form is kept there and answered.
                await reply_after(h, chat, "/role")
                [saved] = await reply_after(h, chat, "Ты юрист")
                assert saved.text == texts.ROLE_SAVED
                assert await role_of(h, chat) == "Ты юрист"

                # A form waits; then Redis stops. The next text is a question, not the form's answer.
                await reply_after(h, chat, "/role")
                await redis_server.stop()
                [reply] = await reply_after(h, chat, "Сколько будет 2+2?")
                assert reply.text == "Echo: Сколько будет 2+2?"
                assert_told_to_try_later(await reply_after(h, chat, "/role"))
                assert await role_of(h, chat) == "Ты юрист"

                # Redis back (empty: no persistence). Forms work again once it is tried again.
                await redis_server.start()
                await asyncio.sleep(RETRY_AFTER_S + 0.5)
                await reply_after(h, chat, "/role")
                [saved] = await reply_after(h, chat, "Ты врач")
                assert saved.text == texts.ROLE_SAVED

                # Redis's host goes silent: a message waits at most a timeout or two, not one per Redis step.
                proxy.hold()
                for text in ("раз", "два", "три"):
                    started = time.monotonic()
                    [reply] = await reply_after(h, chat, text, timeout=PROMPT_S + 2 * COMMAND_TIMEOUT_S)
                    assert reply.text == f"Echo: {text}"
                    assert time.monotonic() - started < PROMPT_S + 2 * COMMAND_TIMEOUT_S
                proxy.release()

                log = h.bot.log_since(offset)
                assert "Traceback" not in log
                assert not any(GENERIC_ERROR in (m.text or "") for m in h.tg.sent_messages(chat))
        finally:
            proxy.close()
