"""The core flow and the parallel quota race on PostgreSQL (a database of its own, dropped afterwards)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from pomogator.bot import texts
from pomogator.llm.catalog import load_catalog
from pomogator.store.tables import User
from tests.bot.harness import BotHarness
from tests.databases import throwaway_postgres
from tests.fakes.openai_server import Reply

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

POSTGRES_URL = os.environ.get("POMOGATOR_TEST_POSTGRES_URL")
DEFAULT = load_catalog().default


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def harness(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    if not POSTGRES_URL:
        pytest.skip("POMOGATOR_TEST_POSTGRES_URL is not set")
    async with (
        throwaway_postgres(POSTGRES_URL, "pomogator_bot") as url,
        BotHarness.open(tmp_path_factory.mktemp("bot-postgres"), database_url=url) as h,
    ):
        yield h


async def test_core_flow_on_postgres(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    start = await h.ask(chat, "/start")
    assert start.buttons
    await h.ask(chat, "/role")
    assert (await h.ask(chat, "Отвечай кратко")).text == texts.ROLE_SAVED
    assert (await h.ask(chat, "first")).text == "Echo: first"
    assert (await h.ask(chat, "second")).text == "Echo: second"
    request = h.llm.requests[-1]
    assert [m["content"] for m in request.messages] == ["Отвечай кратко", "first", "Echo: first", "second"]
    profile = await h.ask(chat, "/profile")
    assert "Запросов сегодня: 2" in (profile.text or "")
    assert "Отвечай кратко" in (profile.text or "")


async def test_parallel_messages_and_the_quota_on_postgres(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.use_up_quota(chat, leave=3)
    requests = h.llm.request_count
    h.llm.max_concurrency = 0
    for _ in range(3):
        h.llm.enqueue(Reply.slow(6, 0.4))
    after = h.tg.last_user_message_id(chat)
    for i in range(10):
        h.tg.user_message(chat, f"q{i}")
    await h.tg.wait_until(lambda: len(h.messages_after(chat, after)) >= 10, 30, "ten replies")
    await h.settle()
    replies = [m.text or "" for m in h.messages_after(chat, after)]
    assert len(replies) == 10
    assert h.llm.request_count == requests + 3
    assert h.llm.max_concurrency == 1
    assert [r.last_user_text for r in h.llm.requests[-3:]] == ["q0", "q1", "q2"]
    assert all(r.startswith("tok0") for r in replies[:3])
    assert all("лимит" in r for r in replies[3:])
    async with h.services() as services:
        assert (await services.quota.used_today(chat)) == {DEFAULT.id: DEFAULT.free_daily}


async def test_a_first_message_without_start_creates_the_user_on_postgres(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    assert (await h.ask(chat, "hello")).text == "Echo: hello"
    async with h.services() as services:
        account = await services.users.get(chat)
        assert account.model.id == DEFAULT.id
        assert await services.quota.used_today(chat) == {DEFAULT.id: 1}


async def test_the_model_falls_back_once_when_premium_ends_on_postgres(harness: BotHarness) -> None:
    """The one-round-trip path leaves a premium-only model without premium to ``touch``: notice, then the answer."""
    h = harness
    chat = h.new_chat()
    locked = next(m for m in load_catalog().models if m.premium_only)
    await h.ask(chat, "/start")
    await h.settle(quiet=0.3)
    texts_after = await h.ask_after_premium_ended(chat, locked.id, "still there?")
    assert texts_after[0].startswith("ℹ️ Премиум закончился") and DEFAULT.title in texts_after[0]
    assert texts_after[1] == "Echo: still there?"
    assert h.llm.requests[-1].model == DEFAULT.id
    assert (await h.ask(chat, "again")).text == "Echo: again"
    async with h.services() as services:
        assert await services.quota.used_today(chat) == {DEFAULT.id: 2}


async def test_a_model_gone_from_the_catalog_is_said_before_the_default_answers_on_postgres(
    harness: BotHarness,
) -> None:
    h = harness
    chat = h.new_chat()
    await h.ask(chat, "hello")
    async with h.services():
        await User.update({User.model: "vendor/retired"}).where(User.telegram_id == chat)
    after = h.tg.sent_messages(chat)[-1].message_id
    h.tg.user_message(chat, "again")
    await h.tg.wait_until(lambda: len(h.messages_after(chat, after)) >= 2, 30, "the notice and the answer")
    await h.settle()
    notice, answer = h.tg.sent_texts(chat)[-2:]
    assert notice.startswith("ℹ️ Модели, которую вы выбирали, больше нет в списке")
    assert answer == "Echo: again"
    async with h.services() as services:
        assert (await services.users.get(chat)).model.id == DEFAULT.id
        assert await services.quota.used_today(chat) == {DEFAULT.id: 2}
