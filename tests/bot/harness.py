"""End-to-end harness: the real ``pomogator run bot`` process against FakeTelegram and FakeLLM.

The fakes run in the test's event loop; the bot is a separate process started with the console script, configured
only through ``POMOGATOR_*`` environment variables, exactly as in production::

    async with BotHarness.open(tmp_path) as h:          # fakes + SQLite file + a running bot
        chat = h.new_chat()
        h.tg.user_message(chat, "/start")
        reply = await h.tg.wait_for_message(chat)
        await h.bot.restart()                           # SIGTERM, wait, start again (same database)

Pieces, usable on their own:

* ``BotProcess`` — one bot process. ``start()`` returns once the bot polls for updates; ``stop()`` sends SIGTERM
  and kills it if it does not exit in time (returns the exit code); ``restart()``. Its stdout and stderr go to a
  log file: ``log()`` and ``log_since(offset)`` read it. Every process started is stopped by ``BotHarness``; the
  ``tests/bot/conftest.py`` autouse fixture prints the log written during a failed test.
* ``BotHarness`` — FakeTelegram, FakeLLM, a database URL and a ``BotProcess``. ``env(**extra)`` builds the bot's
  environment (pass overrides such as ``POMOGATOR_OPENROUTER_TIMEOUT="2"`` to ``open``/``BotHarness.env``),
  ``services()`` opens the core services in the test process on the same database (to grant premium, check quota,
  read the stored context), ``new_chat()`` hands out fresh private chat ids so tests can share one bot, and there
  are helpers: ``ask`` (send and wait for the first reply), ``press`` (a button, returning the callback answer),
  ``stop_draft`` (Telegram's own stop button on a draft), ``settle`` (the bot took every update, and made no Bot API
  call and no model request for a moment). ``settle`` only means "quiet": the bot's database work and its other HTTP
  calls (YooKassa) do not show, so wait for what a test checks (``tg.wait_until``, ``reply_settled(..., until=...)``)
  before settling. ``open(enforce_limits=True)`` makes the fake apply Telegram's flood limits.
* Leftovers: a module's tests share one harness, so what a test scripted and did not use (model actions, Telegram
  faults, held methods) would be taken by the next one. ``tests/bot/conftest.py`` clears them after every test
  (``clear_leftovers``), and ``settle`` does not wait for model requests made before the test began.

A bot on PostgreSQL gets a database of its own (``tests.databases.throwaway_postgres``): other tests truncate the
shared ``test`` database.

Processes are slow to start (importing aiogram takes seconds), so test modules usually share one harness through
a module-scoped fixture (``loop_scope="module"``) and give every test its own chat ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

from pomogator.config import Settings
from pomogator.container import Services, build_services
from tests.conftest import TEST_API_KEY, make_settings
from tests.fakes.openai_server import FakeLLM
from tests.fakes.telegram_server import FakeTelegram, SentMessage

TOKEN = "123456:TEST-token"
START_TIMEOUT = 40.0
STOP_TIMEOUT = 20.0


def bot_command() -> list[str]:
    """The ``pomogator`` console script next to the running interpreter, or the CLI module as a fallback."""
    script = Path(sys.executable).with_name("pomogator")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from pomogator.console import main; main()"]


class BotProcess:
    """One ``pomogator run bot`` process (see the module docstring)."""

    running: ClassVar[set[BotProcess]] = set()

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        ready: Callable[[], bool] | None = None,
        args: tuple[str, ...] = ("run", "bot"),
    ) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.args = args
        self._ready = ready
        self._process: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self, *, wait: bool = True, timeout: float = START_TIMEOUT) -> None:  # noqa: ASYNC109
        """Start the process; with ``wait``, return once the ``ready`` check given at construction holds."""
        if self.alive:
            raise RuntimeError("the bot process is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"----- start #{self.starts + 1} -----\n".encode())
            log.flush()
            self._process = await asyncio.create_subprocess_exec(
                *bot_command(),
                *self.args,
                env=self.env,
                cwd=str(self.log_path.parent),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.starts += 1
        BotProcess.running.add(self)
        check = self._ready
        if check is None or not wait:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not check():
            if not self.alive:
                raise RuntimeError(f"the bot exited with {self.returncode} during start-up:\n{self.log_tail()}")
            if loop.time() > deadline:
                raise TimeoutError(f"the bot was not ready within {timeout}s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    async def stop(self, timeout: float = STOP_TIMEOUT) -> int:  # noqa: ASYNC109
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit code."""
        process = self._process
        if process is None:
            return 0
        try:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), timeout)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            return process.returncode if process.returncode is not None else -1
        finally:
            BotProcess.running.discard(self)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def wait(self, timeout: float = STOP_TIMEOUT) -> int:  # noqa: ASYNC109
        """Wait for the process to exit on its own; returns the exit code."""
        if self._process is None:
            raise RuntimeError("the bot process was never started")
        code = await asyncio.wait_for(self._process.wait(), timeout)
        BotProcess.running.discard(self)
        return code

    def log(self) -> str:
        try:
            return self.log_path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int) -> str:
        with contextlib.suppress(FileNotFoundError), self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", errors="replace")
        return ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


def base_env() -> dict[str, str]:
    """The test's environment without any POMOGATOR_ variable."""
    return {key: value for key, value in os.environ.items() if not key.startswith("POMOGATOR_")}


class BotHarness:
    """FakeTelegram + FakeLLM + a database + the bot process (see the module docstring)."""

    _chat_ids = itertools.count(10_001)
    # Harnesses opened with ``open`` and not closed yet: the conftest clears their leftovers after each test.
    opened: ClassVar[set[BotHarness]] = set()

    def __init__(self, workdir: Path, tg: FakeTelegram, llm: FakeLLM, database_url: str, env: Mapping[str, str]):
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.tg = tg
        self.llm = llm
        self.database_url = database_url
        self.extra_env = dict(env)
        self.bot = BotProcess(self.env(), workdir / "bot.log", ready=self._polling_since_start)
        self._calls_at_start = 0
        # Model requests before this index belong to earlier tests: ``settle`` does not wait for them.
        self._requests_at_test_start = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        workdir: Path,
        *,
        database_url: str | None = None,
        env: Mapping[str, str] | None = None,
        start: bool = True,
        enforce_limits: bool = False,
    ) -> AsyncIterator[Self]:
        """Fakes, a database (an SQLite file in ``workdir`` unless ``database_url``) and, with ``start``, the bot."""
        url = database_url or f"sqlite:///{workdir / 'bot.sqlite3'}"
        async with FakeTelegram(token=TOKEN, enforce_limits=enforce_limits) as tg, FakeLLM(api_key=TEST_API_KEY) as llm:
            harness = cls(workdir, tg, llm, url, env or {})
            cls.opened.add(harness)
            try:
                if start:
                    await harness.start()
                yield harness
            finally:
                cls.opened.discard(harness)
                await harness.bot.stop()

    def env(self, **overrides: str) -> dict[str, str]:
        env = base_env()
        env.update(
            {
                "POMOGATOR_BOT_TOKEN": TOKEN,
                "POMOGATOR_TELEGRAM_API_URL": self.tg.base_url,
                "POMOGATOR_OPENROUTER_API_KEY": TEST_API_KEY,
                "POMOGATOR_OPENROUTER_BASE_URL": self.llm.base_url,
                "POMOGATOR_OPENROUTER_MAX_RETRIES": "0",
                "POMOGATOR_DATABASE_URL": self.database_url,
                "POMOGATOR_LOG_LEVEL": "INFO",
                "POMOGATOR_SHUTDOWN_GRACE_SECONDS": "10",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def _polling_since_start(self) -> bool:
        return any(call.method.lower() == "getupdates" for call in self.tg.calls[self._calls_at_start :])

    async def start(self) -> None:
        """Start the bot and wait until it polls for updates."""
        self._calls_at_start = len(self.tg.calls)
        await self.bot.start()

    async def restart(self) -> None:
        await self.bot.stop()
        await self.start()

    def settings(self, **overrides: Any) -> Settings:
        return make_settings(database_url=self.database_url, openrouter_base_url=self.llm.base_url, **overrides)

    @contextlib.asynccontextmanager
    async def services(self, **overrides: Any) -> AsyncIterator[Services]:
        """The core services in the test process, on the bot's database (already migrated by then); ``overrides``
        are settings the bot was started with too (``models_file``, say)."""
        async with build_services(self.settings(**overrides), migrate=False) as services:
            yield services

    async def use_up_quota(self, chat_id: int, leave: int = 0) -> None:
        """Take all but ``leave`` of today's free requests of the person's model (the person is created if new)."""
        async with self.services() as services:
            account = await services.users.ensure(chat_id)
            for _ in range(account.model.free_daily - leave):
                await services.quota.reserve(chat_id, account.model, premium=False)

    # ---- chats and waiting ---------------------------------------------------------------------------------

    def new_chat(self) -> int:
        """A private chat id no other test uses."""
        return next(self._chat_ids)

    async def ask(self, chat_id: int, text: str, timeout: float = 15.0) -> SentMessage:  # noqa: ASYNC109
        """Send ``text`` as the user and return the bot's first message after it."""
        self.tg.user_message(chat_id, text)
        return await self.tg.wait_for_message(chat_id, timeout=timeout)

    async def reply_settled(
        self, chat_id: int, text: str, until: Callable[[SentMessage], bool] | None = None
    ) -> SentMessage:
        """Send ``text`` as the user and return the bot's first reply, once the bot has done all it causes.

        Work without Bot API calls (the database, YooKassa) looks quiet: when the reply is followed by a later
        message, pass ``until`` to wait for that message first."""
        after = self.last_message_id(chat_id)
        reply = await self.ask(chat_id, text)
        await self._until(chat_id, after, until)
        await self.settle(quiet=0.3)
        return reply

    async def press_settled(
        self,
        chat_id: int,
        message: SentMessage,
        text_part: str,
        until: Callable[[SentMessage], bool] | None = None,
    ) -> None:
        """Press a button (its press is answered) and wait for everything it causes; with ``until``, first for a
        new message matching it (see ``reply_settled``)."""
        after = self.last_message_id(chat_id)
        await self.press(chat_id, message, text_part)
        await self._until(chat_id, after, until)
        await self.settle(quiet=0.3)

    async def _until(self, chat_id: int, after: int, until: Callable[[SentMessage], bool] | None) -> None:
        if until is not None:
            await self.tg.wait_for_message(chat_id, until, timeout=15, after_message_id=after)

    def last_message_id(self, chat_id: int) -> int:
        """The newest message id in the chat, the user's or the bot's (0 if none)."""
        chat = self.tg.chats.get(chat_id)
        return max(chat.messages, default=0) if chat is not None else 0

    async def settle(self, quiet: float = 0.4, timeout: float = 20.0) -> None:  # noqa: ASYNC109
        """Wait until the bot has taken every update, has no Bot API call or model request in flight, and neither
        began nor ended one for ``quiet`` seconds (model requests from before the test began are not waited for)."""

        def quiet_now() -> bool:
            return self.tg.is_idle(quiet) and self._model_quiet(quiet)

        await self.tg.wait_until(quiet_now, timeout, what="the bot idle (no Bot API call or model request)")

    def _model_quiet(self, quiet: float) -> bool:
        now = time.monotonic()
        for request in self.llm.requests[self._requests_at_test_start :]:
            if request.finished_at is None or now - request.finished_at < quiet:
                return False
        return True

    # ---- between tests --------------------------------------------------------------------------------------

    def begin_test(self) -> None:
        """A test of the shared harness begins: what ``settle`` waits for starts from here."""
        self._requests_at_test_start = len(self.llm.requests)

    def clear_leftovers(self) -> list[str]:
        """Drop what the test scripted and nothing used (model actions, Telegram faults) and release held methods,
        so the next test of a shared harness does not take them; returns what was left, described."""
        left = [f"model action {action!r}" for action in self.llm.clear_actions()]
        left += [
            f"Telegram fault on {fault.method} ({fault.error.description}, {fault.times} left"
            f"{'' if fault.chat_id is None else f', chat {fault.chat_id}'})"
            for fault in self.tg.clear_faults()
        ]
        for method in self.tg.held_methods:
            self.tg.release(method)
            left.append(f"Telegram method {method} held")
        return left

    def messages_after(self, chat_id: int, message_id: int) -> list[SentMessage]:
        return [m for m in self.tg.sent_messages(chat_id) if m.message_id > message_id]

    async def ask_after_premium_ended(self, chat_id: int, model_id: str, text: str) -> list[str]:
        """The user chose ``model_id`` with premium, premium ended; then they write ``text``. Returns the texts of
        the two messages that follow (the notice that the model was reset, and the answer)."""
        async with self.services() as services:
            await services.subscriptions.grant(chat_id, 30)
            await services.users.set_model(chat_id, model_id)
            await services.subscriptions.revoke(chat_id)
        after = self.tg.sent_messages(chat_id)[-1].message_id
        self.tg.user_message(chat_id, text)
        await self.tg.wait_until(lambda: len(self.messages_after(chat_id, after)) >= 2, what="notice and answer")
        await self.settle()
        return self.tg.sent_texts(chat_id)[-2:]

    async def press(self, chat_id: int, message: SentMessage, text_part: str, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Press the button whose text contains ``text_part``; returns the bot's answerCallbackQuery parameters."""
        data = str(message.button(text_part)["callback_data"])
        query_id = self.tg.press_button(chat_id, message.message_id, data)
        return await self.wait_callback_answer(query_id, timeout)

    async def wait_callback_answer(self, query_id: str, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        await self.tg.wait_until(lambda: self.tg.callback_answer(query_id) is not None, timeout, "callback answer")
        answer = self.tg.callback_answer(query_id)
        assert answer is not None
        return answer

    def stop_draft(self, chat_id: int, draft_id: int) -> int:
        """The user presses Telegram's own stop button on a draft sent with ``can_stop``."""
        chat = self.tg.add_chat(chat_id)
        return self.tg.push_update({"stopped_message_generation": {"chat": chat.to_dict(), "draft_id": draft_id}})
