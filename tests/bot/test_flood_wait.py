"""Flood limits: waits Telegram asks for are waited out up to a budget per call; a longer one fails the call at once,
the user is told, and the chat's next message is answered."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
import pytest_asyncio
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from pomogator.bot import flood_wait, texts
from pomogator.bot.answer.output import SEND_ATTEMPTS
from pomogator.bot.factory import create_bot
from pomogator.bot.flood_wait import MAX_WAIT_S, FloodWaitTooLong, RetryAfterMiddleware
from pomogator.services.conversations import StoredConversation
from tests.bot.harness import BotHarness
from tests.conftest import make_settings
from tests.fakes.openai_server import Reply
from tests.fakes.telegram_html import check_message
from tests.fakes.telegram_server import FakeTelegram

CHAT = 5
HOUR = 3600


@pytest_asyncio.fixture
async def budget_bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    """A bot whose calls wait 2.5 s at most for flood limits."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url))
    session.middleware(RetryAfterMiddleware(max_wait=2.5))
    bot = Bot(tg.token, session=session)
    tg.add_chat(CHAT)
    try:
        yield bot
    finally:
        await bot.session.close()


async def test_the_bot_gives_a_call_up_at_once_when_telegram_asks_to_wait_an_hour(tg: FakeTelegram) -> None:
    bot = create_bot(make_settings(bot_token=tg.token, telegram_api_url=tg.base_url))
    tg.add_chat(CHAT)
    tg.fail_next("sendMessage", 429, retry_after=HOUR, chat_id=CHAT)
    try:
        async with asyncio.timeout(5):
            with pytest.raises(FloodWaitTooLong) as raised:
                await bot.send_message(CHAT, "hello")
    finally:
        await bot.session.close()
    assert raised.value.retry_after == HOUR
    assert raised.value.waited == 0
    assert HOUR > MAX_WAIT_S
    assert len(tg.calls_of("sendMessage")) == 1


async def test_waits_within_the_budget_are_waited_out(budget_bot: Bot, tg: FakeTelegram) -> None:
    tg.fail_next("sendMessage", 429, retry_after=1, chat_id=CHAT, times=2)
    message = await budget_bot.send_message(CHAT, "hello")
    assert message.text == "hello"
    assert len(tg.calls_of("sendMessage")) == 3


async def test_waits_add_up_and_the_call_fails_past_the_budget(
    budget_bot: Bot, tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    sleep = asyncio.sleep

    async def record_wait(seconds: float) -> None:
        waits.append(seconds)
        await sleep(0)

    # The middleware's waits are recorded instead of slept: what is checked is which waits it starts, not the clock.
    monkeypatch.setattr(flood_wait, "asyncio", SimpleNamespace(sleep=record_wait))
    tg.fail_next("sendMessage", 429, retry_after=1, chat_id=CHAT, times=10)
    with pytest.raises(FloodWaitTooLong) as raised:
        await budget_bot.send_message(CHAT, "hello")
    # Two waits of a second fit in 2.5 s; a third would not, so it is not started (it would end past 3 s).
    assert waits == [1, 1]
    assert raised.value.waited == 2
    assert len(tg.calls_of("sendMessage")) == 3


async def second_question_is_all_that_counts(h: BotHarness, chat: int) -> None:
    """After a first answer that never arrived, a second question is answered; the first was given back: only the
    second counts, and only it is in the context."""
    reply = await h.ask(chat, "второй вопрос", timeout=20)
    assert reply.text == "Echo: второй вопрос"
    async with h.services() as services:
        assert sum((await services.quota.used_today(chat)).values()) == 1
        history = await StoredConversation(chat).history()
    stored = [turn.content for turn in history]
    assert [json.loads(c) for c in stored if isinstance(c, str | bytes)] == ["второй вопрос", "Echo: второй вопрос"]


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_a_long_flood_limit_tells_the_user_and_frees_the_chat(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.fail_next("sendMessage", 429, retry_after=HOUR, chat_id=chat)
    offset = h.bot.log_size()
    notice = await h.ask(chat, "первый вопрос", timeout=20)
    assert notice.text == check_message(texts.FLOOD_LIMITED, "HTML")
    await second_question_is_all_that_counts(h, chat)
    assert "первый вопрос" not in json.dumps(h.llm.requests[-1].messages, ensure_ascii=False)
    log = h.bot.log_since(offset)
    assert re.search(r"Update given up on a Telegram flood limit: .*Retry in 3600 seconds", log)
    assert "Traceback" not in log


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_a_long_flood_limit_on_a_draft_does_not_hold_the_answer_back(harness: BotHarness) -> None:
    """A draft is not retried, so its flood wait reaches the renderer whole; the final message does not sleep it out
    (holding a kept and counted answer and the chat's turn): its own call waits, or gives up, within the budget."""
    h = harness
    chat = h.new_chat()
    h.tg.fail_next("sendMessageDraft", 429, retry_after=HOUR, chat_id=chat)
    h.llm.enqueue(Reply.slow(10, 1.0))
    h.tg.user_message(chat, "go")
    reply = await h.tg.wait_for_message(chat, timeout=10)
    await h.settle()
    assert reply.text == " ".join(f"tok{i}" for i in range(10))
    assert h.tg.drafts(chat).count == 0  # the one refused; none after it


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_an_answer_telegram_cannot_take_is_given_back_and_the_user_told(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    # Every try of the answer's message fails (Telegram unreachable for a few seconds); the notice gets through.
    h.tg.fail_next("sendMessage", 502, "Bad Gateway", times=SEND_ATTEMPTS, chat_id=chat)
    offset = h.bot.log_size()
    notice = await h.ask(chat, "первый вопрос", timeout=20)
    assert notice.text == texts.TELEGRAM_UNAVAILABLE
    await second_question_is_all_that_counts(h, chat)
    log = h.bot.log_since(offset)
    assert re.search(r"ERROR.*Update given up, Telegram is unavailable \(TelegramServerError\): .*Bad Gateway", log)
    assert "Traceback" not in log


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_an_answer_held_back_part_way_leaves_no_part_of_it(harness: BotHarness) -> None:
    """The first message of a long answer went out while the model wrote; Telegram then held the rest back for an
    hour. The answer is given back and leaves the context, so its first part goes too: left alone it would read as
    the whole answer."""
    h = harness
    chat = h.new_chat()
    paragraph = " ".join(f"слово{i}" for i in range(500))
    h.llm.enqueue(Reply(text=f"{paragraph}\n\n{paragraph}", tokens_per_second=400, chunk_size=5))
    h.tg.user_message(chat, "длинный ответ")
    await h.tg.wait_until(lambda: len(h.tg.sent_messages(chat)) >= 1, 30, "the answer's first message")
    h.tg.fail_next("sendMessage", 429, retry_after=HOUR, chat_id=chat)
    await h.tg.wait_until(
        lambda: any(m.text == texts.FLOOD_LIMITED for m in h.tg.sent_messages(chat)), 30, "the notice"
    )
    await h.settle()
    assert [m.text for m in h.tg.sent_messages(chat)] == [check_message(texts.FLOOD_LIMITED, "HTML")]
    assert len(h.tg.sent_messages(chat, include_deleted=True)) == 2
    await second_question_is_all_that_counts(h, chat)
