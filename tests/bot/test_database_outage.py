"""The bot while its PostgreSQL server is away (a proxy in front of it is cut): a short outage is waited out and the
message answered; in a long one the message that waited is refused with a clear message and later ones are left with
Telegram until the database is back; an answer whose storing fails still arrives."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from pomogator.bot import texts
from pomogator.container import build_services
from pomogator.llm.catalog import load_catalog
from pomogator.services.formatting import html_to_text
from tests.bot.harness import BotHarness
from tests.conftest import make_settings
from tests.databases import throwaway_postgres
from tests.fakes.openai_server import Reply
from tests.fakes.tcp_proxy import TcpProxy
from tests.fakes.telegram_server import SentMessage

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

POSTGRES_URL = os.environ.get("POMOGATOR_TEST_POSTGRES_URL")
DEFAULT = load_catalog().default
RECONNECT_S = 4.0


class Outage:
    def __init__(self, harness: BotHarness, proxy: TcpProxy, direct_url: str) -> None:
        self.h = harness
        self.proxy = proxy
        self.direct_url = direct_url

    async def chat_answered_once(self) -> tuple[int, SentMessage]:
        """A new chat whose first message, "before", was answered while the database was there."""
        chat = self.h.new_chat()
        before = await self.h.ask(chat, "before")
        assert before.text == "Echo: before"
        return chat, before


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def outage(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Outage]:
    if not POSTGRES_URL:
        pytest.skip("POMOGATOR_TEST_POSTGRES_URL is not set")
    async with throwaway_postgres(POSTGRES_URL, "pomogator_bot") as url:
        host, port = url.split("@", 1)[1].split("/", 1)[0].split(":")
        proxy = TcpProxy(host, int(port)).start()
        try:
            env = {"POMOGATOR_DATABASE_RECONNECT_SECONDS": str(RECONNECT_S)}
            async with BotHarness.open(
                tmp_path_factory.mktemp("bot-outage"), database_url=proxy.url(url), env=env
            ) as h:
                yield Outage(h, proxy, url)
        finally:
            proxy.close()


async def test_a_message_sent_while_the_database_restarts_is_answered(outage: Outage) -> None:
    h = outage.h
    offset = h.bot.log_size()
    chat, before = await outage.chat_answered_once()
    after = before.message_id
    outage.proxy.cut()
    try:
        h.tg.user_message(chat, "during")
        # The bot is waiting for the database: "typing…", nothing else.
        await h.tg.wait_until(lambda: h.tg.chat_actions(chat) != [], 10, "typing")
        assert h.messages_after(chat, after) == []
    finally:
        outage.proxy.restore()
    reply = await h.tg.wait_for_message(chat, after_message_id=after, timeout=20)
    assert reply.text == "Echo: during"
    assert [m["content"] for m in h.llm.requests[-1].messages] == ["before", "Echo: before", "during"]
    async with build_services(make_settings(database_url=outage.direct_url)) as services:
        assert await services.quota.used_today(chat) == {DEFAULT.id: 2}
    assert "Traceback" not in h.bot.log_since(offset)


async def test_a_long_outage_refuses_the_message_it_held_and_keeps_the_later_ones_with_telegram(outage: Outage) -> None:
    h = outage.h
    chat, before = await outage.chat_answered_once()
    requests = h.llm.request_count
    after = before.message_id
    offset = h.bot.log_size()
    outage.proxy.cut()
    try:
        h.tg.user_message(chat, "during")
        refusal = await h.tg.wait_for_message(chat, after_message_id=after, timeout=RECONNECT_S + 15)
        assert refusal.text == texts.DATABASE_UNAVAILABLE
        # Past the wait, the bot leaves new updates with Telegram instead of refusing them.
        await h.tg.wait_until(lambda: "updates are left with Telegram" in h.bot.log_since(offset), 10, "the pause")
        h.tg.user_message(chat, "kept")
        await asyncio.sleep(2)
        assert h.messages_after(chat, refusal.message_id) == []
    finally:
        outage.proxy.restore()
    kept = await h.tg.wait_for_message(chat, after_message_id=refusal.message_id, timeout=15)
    assert kept.text == "Echo: kept"
    assert h.llm.request_count == requests + 1
    assert [m["content"] for m in h.llm.requests[-1].messages] == ["before", "Echo: before", "kept"]
    log = h.bot.log_since(offset)
    assert "the database is unavailable" in log
    assert "taking updates again" in log
    assert "Traceback" not in log


async def test_an_answer_the_database_cannot_store_still_arrives_and_says_so(outage: Outage) -> None:
    h = outage.h
    offset = h.bot.log_size()
    chat, before = await outage.chat_answered_once()
    after = before.message_id
    h.llm.enqueue(Reply.slow(8, 1.5))
    h.tg.user_message(chat, "slow")
    # The request is taken and the context read; the database goes away while the model writes.
    await h.tg.wait_until(lambda: bool(h.llm.requests) and h.llm.requests[-1].last_user_text == "slow", 10, "request")
    outage.proxy.cut()
    try:
        answer = await h.tg.wait_for_message(chat, after_message_id=after, timeout=RECONNECT_S + 20)
    finally:
        outage.proxy.restore()
    assert (answer.text or "").startswith(" ".join(f"tok{i}" for i in range(8)))
    assert (answer.text or "").endswith(html_to_text(texts.UNSAVED_MARK))
    assert "Answer not stored, the database is unavailable" in h.bot.log_since(offset)
    assert (await h.ask(chat, "next")).text == "Echo: next"
    # The unsaved exchange is not in the context; its request was taken from the quota all the same.
    assert [m["content"] for m in h.llm.requests[-1].messages] == ["before", "Echo: before", "next"]
    async with build_services(make_settings(database_url=outage.direct_url)) as services:
        assert await services.quota.used_today(chat) == {DEFAULT.id: 3}


async def test_a_button_pressed_in_a_long_outage_is_to_be_pressed_again(outage: Outage) -> None:
    h = outage.h
    chat, _ = await outage.chat_answered_once()
    menu = await h.reply_settled(chat, "/start")
    outage.proxy.cut()
    try:
        query = h.tg.press_button(chat, menu.message_id, str(menu.button("Профиль")["callback_data"]))
        refusal = await h.tg.wait_for_message(chat, after_message_id=menu.message_id, timeout=RECONNECT_S + 15)
        # A press has no message to send again.
        assert refusal.text == texts.DATABASE_UNAVAILABLE_PRESS
        await h.wait_callback_answer(query)  # the press is answered all the same: the button stops spinning
    finally:
        outage.proxy.restore()
    # Once the database is back, messages are taken again.
    h.tg.user_message(chat, "after")
    answer = await h.tg.wait_for_message(chat, lambda m: m.text == "Echo: after", timeout=20, after_message_id=0)
    assert answer.text == "Echo: after"
