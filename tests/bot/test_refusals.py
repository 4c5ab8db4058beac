"""What the bot says where premium cannot be bought (no payments configured), and about a message too long for
the model, end to end with a small test catalog."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from pomogator.bot import texts
from tests.bot.harness import BotHarness
from tests.fakes.openai_server import Error

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

CATALOG = """
default = "test/free"

[[models]]
id = "test/free"
title = "Свободная"
free_daily = 5
premium_daily = 10
context_length = 100000

[[models]]
id = "test/short"
title = "Короткая"
free_daily = 5
premium_daily = 10
context_length = 700
max_output_tokens = 100

[[models]]
id = "test/locked"
title = "Закрытая"
free_daily = 0
premium_daily = 5
context_length = 100000
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def harness(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    workdir: Path = tmp_path_factory.mktemp("refusals")
    (workdir / "models.toml").write_text(CATALOG, "utf-8")
    async with BotHarness.open(workdir, env={"POMOGATOR_MODELS_FILE": str(workdir / "models.toml")}) as h:
        yield h


async def choose_short_model(h: BotHarness, chat: int) -> int:
    """Choose the model with the small context; returns the requests used today."""
    async with h.services(models_file=h.workdir / "models.toml") as services:
        await services.users.ensure(chat)
        await services.users.set_model(chat, "test/short")
        return sum((await services.quota.used_today(chat)).values())


async def test_without_payments_the_menu_and_the_profile_do_not_point_to_billing(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    menu = (await h.reply_settled(chat, "/model")).text or ""
    # Premium is given by the admins meanwhile: it is not promised as "coming soon" to someone who may have had it.
    assert menu.endswith("🔒 — только с премиумом") and "/billing" not in menu and "скоро" not in menu
    profile = (await h.reply_settled(chat, "/profile")).text or ""
    assert profile.endswith("Премиум: нет") and "/billing" not in profile


async def test_without_payments_the_quota_refusal_does_not_point_to_billing(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    async with h.services(models_file=h.workdir / "models.toml") as services:
        await services.users.ensure(chat)
        model = services.catalog.default
        for _ in range(model.free_daily):
            await services.quota.reserve(chat, model, premium=False)
    refusal = (await h.reply_settled(chat, "ещё вопрос")).text or ""
    assert "5 запросов" in refusal and "/billing" not in refusal and "прем" not in refusal.lower()


async def test_a_message_too_long_for_the_model_says_so_and_costs_nothing(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    assert await choose_short_model(h, chat) == 0
    before = h.llm.request_count
    text = (await h.reply_settled(chat, "слово " * 500)).text or ""
    assert text.startswith("📏 Сообщение слишком длинное для модели Короткая")
    # /model shows no lengths: the models that would read it are named, free ones first.
    assert (
        "Сократите его или выберите модель, которая прочитает его целиком: Свободная, Закрытая 🔒 "
        "(🔒 — только с премиумом). Сменить модель: /model." in text
    )
    assert "/delete_context" not in text and text.endswith(texts.NOT_COUNTED)
    assert h.llm.request_count == before
    assert await choose_short_model(h, chat) == 0


async def test_a_premium_user_is_shown_no_locks(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    async with h.services(models_file=h.workdir / "models.toml") as services:
        await services.users.ensure(chat)
        await services.subscriptions.grant(chat, 30)
    menu = (await h.reply_settled(chat, "/model")).text or ""
    assert "Закрытая — только премиум / 5" in menu and "🔒" not in menu
    assert await choose_short_model(h, chat) == 0
    text = (await h.reply_settled(chat, "слово " * 500)).text or ""
    assert "которая прочитает его целиком: Свободная, Закрытая. Сменить модель: /model." in text
    assert "🔒" not in text


async def test_a_request_the_provider_refuses_keeps_its_own_advice(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.llm.enqueue(Error(status=400, message="Bad request"))
    assert (await h.reply_settled(chat, "hello")).text == texts.LLM_BAD_REQUEST
