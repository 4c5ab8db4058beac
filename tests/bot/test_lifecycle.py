"""The bot process's life: start-up calls, restarts, graceful shutdown, nothing lost while it is down."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from pomogator.bot import texts
from pomogator.container import build_services
from pomogator.services.conversations import StoredConversation
from pomogator.store.tables import LogRecord
from pomogator.timeutil import utcnow
from tests.bot.harness import TOKEN, BotHarness
from tests.conftest import TEST_API_KEY
from tests.databases import throwaway_postgres
from tests.fakes.openai_server import FakeLLM, Reply
from tests.fakes.telegram_server import FakeTelegram

pytestmark = pytest.mark.slow

PROFILE_SETTERS = ("setMyCommands", "setMyDescription", "setMyShortDescription")


def setter_calls(h: BotHarness) -> int:
    return sum(len(h.tg.calls_of(method)) for method in PROFILE_SETTERS)


async def test_a_restart_keeps_role_and_context_and_answers_what_was_sent_meanwhile(tmp_path: Path) -> None:
    async with BotHarness.open(tmp_path) as h:
        chat, other = h.new_chat(), h.new_chat()
        await h.ask(chat, "/role")
        assert (await h.ask(chat, "Ты — пират")).text == texts.ROLE_SAVED
        assert (await h.ask(chat, "first")).text == "Echo: first"
        await h.tg.wait_until(lambda: setter_calls(h) == 3, what="profile set")
        await h.settle()

        assert await h.bot.stop() == 0
        h.tg.user_message(chat, "second")
        h.tg.user_message(other, "written while the bot was down")
        await h.start()

        answer = await h.tg.wait_for_message(chat, timeout=15)
        assert answer.text == "Echo: second"
        assert (await h.tg.wait_for_message(other, timeout=15)).text == "Echo: written while the bot was down"
        request = next(r for r in h.llm.requests if r.last_user_text == "second")
        assert request.system_prompt == "Ты — пират"
        assert [m["content"] for m in request.messages] == ["Ты — пират", "first", "Echo: first", "second"]
        await h.settle()
        # Commands and descriptions did not change, so they were only read.
        assert setter_calls(h) == 3
        assert len(h.tg.calls_of("getMyCommands")) == 4  # each start reads the private chats' menu and groups'
        assert h.tg.pending_updates == []


async def test_sigterm_lets_the_answers_in_progress_and_queued_finish(tmp_path: Path) -> None:
    async with BotHarness.open(tmp_path) as h:
        chat = h.new_chat()
        h.llm.enqueue(Reply.slow(20, 2.0), Reply.slow(10, 0.5))
        h.tg.user_message(chat, "slow one")
        h.tg.user_message(chat, "queued one")
        await h.tg.wait_until(lambda: h.tg.drafts(chat).count >= 1, 15, "a draft")
        assert await h.bot.stop() == 0
        assert h.tg.sent_texts(chat) == [
            " ".join(f"tok{i}" for i in range(20)),
            " ".join(f"tok{i}" for i in range(10)),
        ]
        async with h.services() as services:
            assert sum((await services.quota.used_today(chat)).values()) == 2
        assert "Bot stopped" in h.bot.log()


async def test_messages_a_shutdown_cut_off_are_asked_for_again(tmp_path: Path) -> None:
    """Polling confirmed them to Telegram, which will not send them again: silence would lose them."""
    async with BotHarness.open(tmp_path, env={"POMOGATOR_SHUTDOWN_GRACE_SECONDS": "1"}) as h:
        chat = h.new_chat()
        h.llm.enqueue(Reply.slow(40, 30.0))
        h.tg.user_message(chat, "slow one")
        h.tg.user_message(chat, "queued one")
        await h.tg.wait_until(lambda: h.tg.drafts(chat).count >= 1, 15, "a draft")
        assert await h.bot.stop() == 0
        notices = [m for m in h.tg.sent_messages(chat) if m.text == texts.CUT_OFF_BY_RESTART]
        assert len(notices) == 2
        assert "2 update(s) still in progress at shutdown were cut off" in h.bot.log()


async def test_updates_a_shutdown_cut_off_end_before_their_people_are_asked_again(tmp_path: Path) -> None:
    """Cancelled when the grace runs out, as in webhook mode: not left running while the bot asks their people to
    send them again and closes its services (an answer finishing then would be kept and counted, never delivered)."""
    async with BotHarness.open(tmp_path, env={"POMOGATOR_SHUTDOWN_GRACE_SECONDS": "1"}) as h:
        chat = h.new_chat()
        # Ends within the 5 s the held notice waits, seconds after the grace runs out even on a slow machine.
        h.llm.enqueue(Reply.slow(10, 4.5))
        h.tg.user_message(chat, "slow one")
        await h.tg.wait_until(lambda: h.tg.drafts(chat).count >= 1, 15, "a draft")
        h.tg.hold("sendMessage")  # the notice takes its time: seconds in which the model would finish
        try:
            assert await h.bot.stop() == 0
        finally:
            h.tg.release("sendMessage")
        assert h.llm.requests[-1].cancelled  # ended when the grace ran out, not streamed to its end
        async with h.services() as services:
            assert sum((await services.quota.used_today(chat)).values()) == 0
            assert await StoredConversation(chat).history() == []


@contextlib.asynccontextmanager
async def database_url(kind: str) -> AsyncIterator[str | None]:
    """None for the harness's SQLite file, or a throwaway PostgreSQL database (skipped without a server)."""
    if kind == "sqlite":
        yield None
        return
    server = os.environ.get("POMOGATOR_TEST_POSTGRES_URL")
    if not server:
        pytest.skip("POMOGATOR_TEST_POSTGRES_URL is not set")
    async with throwaway_postgres(server, "pomogator_cut_off") as url:
        yield url


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_an_answer_cut_off_while_it_is_sent_costs_nothing_and_leaves_the_context(
    tmp_path: Path, kind: str
) -> None:
    """Kept and counted, its message waiting out a flood limit when the grace runs out: the person is asked to send
    the message again, so they must not pay for it twice nor find it answered in the context."""
    async with (
        database_url(kind) as url,
        BotHarness.open(tmp_path, database_url=url, env={"POMOGATOR_SHUTDOWN_GRACE_SECONDS": "1"}) as h,
    ):
        chat = h.new_chat()
        h.tg.fail_next("sendMessage", 429, retry_after=30, chat_id=chat)
        h.tg.user_message(chat, "вопрос")
        await h.tg.wait_until(lambda: h.tg.flood_errors == 1, 15, "the answer's message held back")
        assert await h.bot.stop() == 0
        assert h.tg.sent_texts(chat) == [texts.CUT_OFF_BY_RESTART]
        async with h.services() as services:
            assert sum((await services.quota.used_today(chat)).values()) == 0
            assert await StoredConversation(chat).history() == []
        assert "1 update(s) still in progress at shutdown were cut off" in h.bot.log()


async def test_a_menu_an_earlier_version_set_for_every_chat_is_taken_back_at_start(tmp_path: Path) -> None:
    """Groups get no command menu: the bot answers nothing there but a pointer to its private chat."""
    async with BotHarness.open(tmp_path, start=False) as h:
        every_chat = (json.dumps({"type": "default"}, sort_keys=True), "")
        h.tg.commands[every_chat] = [{"command": "start", "description": "Начать"}]
        await h.start()
        await h.tg.wait_until(lambda: setter_calls(h) == 3, what="profile set")
        await h.settle()
        assert every_chat not in h.tg.commands
        assert len(h.tg.calls_of("deleteMyCommands")) == 1
        private = (json.dumps({"type": "all_private_chats"}, sort_keys=True), "")
        assert [c["command"] for c in h.tg.commands[private]] == [name for name, _ in texts.COMMANDS]


async def test_the_polling_bot_runs_the_background_jobs_without_a_web_app(tmp_path: Path) -> None:
    """A deployment without payments may run the bot alone: it still sends the premium reminders and deletes the
    stored log records past their retention, as the web app does."""
    async with BotHarness.open(tmp_path, start=False, env={"POMOGATOR_LOG_DB_RETENTION_DAYS": "30"}) as h:
        chat = h.new_chat()
        h.tg.add_chat(chat, "private")
        async with build_services(h.settings()) as services:
            await services.users.ensure(chat)
            await services.subscriptions.grant(chat, 2)  # ends within the reminder's three days
            old = utcnow() - timedelta(days=31)
            await LogRecord.insert(
                LogRecord(created_at=old, level="INFO", logger="test", message="old", process="test"),
                LogRecord(created_at=utcnow(), level="INFO", logger="test", message="recent", process="test"),
            )
        await h.start()
        reminder = await h.tg.wait_for_message(chat, timeout=15)
        assert (reminder.text or "").startswith("⏳ Премиум закончится")
        async with h.services():
            for _ in range(500):
                if not await LogRecord.exists().where(LogRecord.message == "old"):
                    break
                await asyncio.sleep(0.02)
            assert not await LogRecord.exists().where(LogRecord.message == "old")
            assert await LogRecord.exists().where(LogRecord.message == "recent")


async def test_start_up_profile_calls_are_best_effort(tmp_path: Path) -> None:
    async with BotHarness.open(tmp_path, start=False) as h:
        h.tg.fail_next("getMyCommands", 429, retry_after=3600)
        h.tg.fail_next("getMyDescription", 500)
        h.tg.fail_next("setMyShortDescription", 400, "Bad Request: description is too long")
        await h.start()
        chat = h.new_chat()
        reply = await h.ask(chat, "/start")
        assert reply.buttons
        await h.settle()
        assert not h.tg.commands and "" not in h.tg.descriptions and "" not in h.tg.short_descriptions
        assert h.bot.alive


async def test_a_set_webhook_stops_polling_until_it_is_deleted_and_keeps_its_updates(tmp_path: Path) -> None:
    # A webhook means a web app takes the updates: polling would take them from it (a polling container left
    # behind after a switch to webhook mode, restarted, did). Back to polling is `pomogator bot delete-webhook`.
    async with BotHarness.open(tmp_path, start=False) as h:
        async with aiohttp.ClientSession() as session:
            url = f"{h.tg.base_url}/bot{TOKEN}/setWebhook"
            async with session.post(url, json={"url": "https://bot.example.com/webhooks/telegram"}) as response:
                assert (await response.json())["ok"]
        chat = h.new_chat()
        h.tg.user_message(chat, "sent to the webhook")
        await h.bot.start(wait=False)
        assert await h.bot.wait(timeout=30) == 1
        log = h.bot.log()
        assert "A webhook is set (to bot.example.com)" in log and "pomogator bot delete-webhook" in log
        assert "Traceback" not in log
        assert h.tg.webhook is not None and h.tg.calls_of("deleteWebhook") == []

        async with aiohttp.ClientSession() as session, session.post(f"{h.tg.base_url}/bot{TOKEN}/deleteWebhook") as r:
            assert (await r.json())["ok"]
        await h.start()
        reply = await h.tg.wait_for_message(chat, timeout=15)
        assert reply.text == "Echo: sent to the webhook"


async def test_a_rejected_token_stops_with_a_clear_message(tmp_path: Path) -> None:
    async with BotHarness.open(tmp_path, start=False, env={"POMOGATOR_BOT_TOKEN": "999:wrong"}) as h:
        await h.bot.start(wait=False)
        assert await h.bot.wait(timeout=30) == 1
        log = h.bot.log()
        assert "POMOGATOR_BOT_TOKEN" in log
        assert "999:wrong" not in log
        assert "Traceback" not in log


async def test_the_bot_waits_for_a_bot_api_that_comes_up_later(tmp_path: Path) -> None:
    # Bound and not listening until the fake starts on it: the bot's connections are refused, and no other process
    # can take the port meanwhile.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        tg = FakeTelegram(token=TOKEN, sock=probe)
        async with FakeLLM(api_key=TEST_API_KEY) as llm:
            h = BotHarness(tmp_path, tg, llm, f"sqlite:///{tmp_path / 'bot.sqlite3'}", {})
            await h.bot.start(wait=False)
            try:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 30
                while "not reachable" not in h.bot.log():
                    assert h.bot.alive and loop.time() < deadline, h.bot.log_tail()
                    await asyncio.sleep(0.1)
                # The first warning says what can be done; the bot goes on trying.
                assert "until it answers (check the network; POMOGATOR_TELEGRAM_API_URL" in h.bot.log()
                async with tg:
                    chat = h.new_chat()
                    reply = await h.ask(chat, "are you up?", timeout=30)
                    assert reply.text == "Echo: are you up?"
            finally:
                await h.bot.stop()
