"""OpenRouter's refusals that are not what their status suggests, as a user and the admins see them: a key's spend
limit and a region block (403s, like moderation), a routing refusal ("No endpoints found ...", like a withdrawn
model), an empty answer, and a complete answer whose connection failed before its usage came."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from pomogator.bot import texts
from pomogator.llm.catalog import load_catalog
from tests.bot.harness import BotHarness
from tests.fakes.openai_server import Error, Reply

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

ADMIN = 7_000_001
DEFAULT = load_catalog().default
# An alert is a message to the admins; waiting for one covers the bot's own alert cooldown check too.
ALERT_TIMEOUT_S = 15.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def harness(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    workdir: Path = tmp_path_factory.mktemp("refusals")
    async with BotHarness.open(workdir, env={"POMOGATOR_ADMIN_IDS": str(ADMIN)}, start=False) as h:
        h.tg.add_chat(ADMIN)
        await h.start()
        yield h


async def used_today(h: BotHarness, chat: int) -> int:
    async with h.services() as services:
        return sum((await services.quota.used_today(chat)).values())


async def refused(h: BotHarness, action: Error | Reply) -> str:
    """The user's one reply to a message the model answers with ``action``; the request must not be counted."""
    chat = h.new_chat()
    h.llm.enqueue(action)
    reply = await h.reply_settled(chat, "вопрос")
    assert await used_today(h, chat) == 0
    return reply.text or ""


def alerts(h: BotHarness) -> list[str]:
    return h.tg.sent_texts(ADMIN)


async def test_a_spent_key_limit_is_unavailable_to_users_and_alerts_the_admins(harness: BotHarness) -> None:
    h = harness
    limit = "Key limit exceeded (total limit). Manage it using https://openrouter.ai/settings/keys"
    text = await refused(h, Error(status=403, message=limit))
    # Every model fails alike: the user is not sent to /model to try them one by one.
    assert text == texts.LLM_ACCOUNT_PROBLEM
    assert "/model" not in text
    assert texts.NOT_COUNTED in text
    alert = await h.tg.wait_for_message(ADMIN, lambda m: "llm_account" in (m.text or ""), ALERT_TIMEOUT_S, 0)
    assert "Key limit exceeded" in (alert.text or "")


async def test_a_model_refused_in_the_servers_region_sends_users_to_another_and_alerts_the_admins(
    harness: BotHarness,
) -> None:
    h = harness
    raw = (
        '{"error":{"code":"unsupported_country_region_territory",'
        '"message":"Country, region, or territory not supported"}}'
    )
    action = Error(status=403, message="Provider returned error", metadata={"raw": raw, "provider_name": "OpenAI"})
    assert await refused(h, action) == texts.LLM_REGION_BLOCKED
    alert = await h.tg.wait_for_message(ADMIN, lambda m: "model_region" in (m.text or ""), ALERT_TIMEOUT_S, 0)
    assert DEFAULT.id in (alert.text or "")
    assert "unsupported_country_region_territory" in (alert.text or "")


async def test_a_request_no_provider_of_the_model_takes_is_not_a_withdrawn_model(harness: BotHarness) -> None:
    h = harness
    action = Error(status=404, message="No endpoints found that support image input")
    assert await refused(h, action) == texts.LLM_BAD_REQUEST
    assert not any("model_gone" in alert for alert in alerts(h))


async def test_an_empty_answer_is_told_as_such(harness: BotHarness) -> None:
    assert await refused(harness, Reply(text="")) == texts.LLM_EMPTY_ANSWER


async def test_a_complete_answer_whose_connection_failed_before_its_usage_is_delivered_and_counted(
    harness: BotHarness,
) -> None:
    h = harness
    chat = h.new_chat()
    h.llm.enqueue(Reply(text="Полный ответ.", drop_after_finish=True))
    reply = await h.reply_settled(chat, "вопрос")
    assert reply.text == "Полный ответ."
    assert [m.message_id for m in h.messages_after(chat, h.tg.last_user_message_id(chat))] == [reply.message_id]
    assert await used_today(h, chat) == 1
    async with h.services() as services:
        assert await services.chat.clear_context(chat) == 2
