"""Answers that end unusually, end to end: the person erased (/delete_me) or the context cleared while the answer
streams, a blank answer, an answer cut off by the model's length limit; and how the renderer ends them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from pomogator.bot import texts
from pomogator.services.formatting import html_to_text, utf16_len
from pomogator.store.tables import DialogMessage, LLMRequest
from tests.bot.harness import BotHarness
from tests.bot.test_renderer import FakeOutput, Stream, renderer
from tests.databases import throwaway_postgres
from tests.fakes.openai_server import Reply
from tests.fakes.telegram_server import SentMessage

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

POSTGRES_URL = os.environ.get("POMOGATOR_TEST_POSTGRES_URL")
CUT_OFF_NOTE = html_to_text(texts.CUT_OFF_MARK)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgres"])
async def harness(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[BotHarness]:
    workdir: Path = tmp_path_factory.mktemp(f"unusual-{request.param}")
    if request.param == "sqlite":
        async with BotHarness.open(workdir) as h:
            yield h
        return
    if not POSTGRES_URL:
        pytest.skip("POMOGATOR_TEST_POSTGRES_URL is not set")
    async with (
        throwaway_postgres(POSTGRES_URL, "pomogator_bot") as url,
        BotHarness.open(workdir, database_url=url) as h,
    ):
        yield h


async def stored_rows(h: BotHarness, chat: int) -> tuple[int, int]:
    """The chat's stored turns and usage rows."""
    async with h.services():
        turns = await DialogMessage.count().where(DialogMessage.telegram_id == chat)
        requests = await LLMRequest.count().where(LLMRequest.telegram_id == chat)
    return turns, requests


# The answer streams for 12 seconds: what the test does meanwhile has that long, even on a loaded machine.
TOKENS = 60
LAST = f"tok{TOKENS - 1}"


async def ask_slowly_and_wait_for_a_draft(h: BotHarness, chat: int, text: str) -> None:
    h.llm.enqueue(Reply.slow(TOKENS, 12.0))
    h.tg.user_message(chat, text)
    await h.tg.wait_until(lambda: "tok2" in (h.tg.drafts(chat).latest_text or ""), 15, "the answer streaming")


async def the_answer(h: BotHarness, chat: int) -> SentMessage:
    await h.tg.wait_until(lambda: any(LAST in text for text in h.tg.sent_texts(chat)), 30, "the whole answer")
    await h.settle()
    return next(m for m in h.tg.sent_messages(chat) if LAST in (m.text or ""))


async def test_delete_me_confirmed_while_an_answer_streams_leaves_nothing(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.ask(chat, "remember me")
    prompt = await h.ask(chat, "/delete_me")
    await ask_slowly_and_wait_for_a_draft(h, chat, "question to be erased")
    await h.press(chat, prompt, texts.DELETE_ME_CONFIRM)
    assert h.tg.message(chat, prompt.message_id).text == texts.DELETE_ME_DONE
    # The answer stops where it was, and says so.
    await h.tg.wait_until(
        lambda: any(html_to_text(texts.STOPPED_MARK) in text for text in h.tg.sent_texts(chat)),
        10,
        "the answer stopped",
    )
    await h.settle()
    assert not any(LAST in text for text in h.tg.sent_texts(chat))
    async with h.services() as services:
        assert not await services.users.exists(chat)
        # Both questions were answered (the second in part): today's count stays until midnight.
        assert sum((await services.quota.used_today(chat)).values()) == 2
    assert await stored_rows(h, chat) == (0, 0)


async def test_a_message_queued_behind_the_erased_answer_is_dropped_and_one_sent_after_is_answered(
    harness: BotHarness,
) -> None:
    h = harness
    chat = h.new_chat()
    prompt = await h.ask(chat, "/delete_me")
    await ask_slowly_and_wait_for_a_draft(h, chat, "question to be erased")
    h.tg.user_message(chat, "queued before the erasure")  # waits for its turn behind the answer
    await h.press(chat, prompt, texts.DELETE_ME_CONFIRM)
    await h.tg.wait_until(
        lambda: texts.DELETE_ME_EARLIER_MESSAGE in h.tg.sent_texts(chat), 10, "the queued message dropped"
    )
    await h.settle()
    assert h.tg.message(chat, prompt.message_id).text == texts.DELETE_ME_DONE
    # Not handled: the account is not created anew, the model never saw the message, nothing is stored.
    assert not any("queued before the erasure" in str(r.messages) for r in h.llm.requests)
    async with h.services() as services:
        assert not await services.users.exists(chat)
    assert await stored_rows(h, chat) == (0, 0)
    # A message sent after the erasure is a new person's, answered as usual.
    assert (await h.reply_settled(chat, "hello again")).text == "Echo: hello again"
    async with h.services() as services:
        assert await services.users.exists(chat)
    assert await stored_rows(h, chat) == (2, 1)


async def test_the_clear_button_pressed_while_an_answer_streams_forgets_that_answer_too(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    menu = await h.ask(chat, "/start")
    await h.ask(chat, "earlier")
    await ask_slowly_and_wait_for_a_draft(h, chat, "current")
    await h.press(chat, menu, texts.MENU_DELETE_CONTEXT)
    await h.tg.wait_until(lambda: texts.CONTEXT_CLEARED in h.tg.sent_texts(chat), 10, "the clear confirmed")
    await the_answer(h, chat)
    assert await stored_rows(h, chat) == (0, 2)  # both answers are counted, neither remembered
    assert (await h.ask(chat, "next")).text == "Echo: next"
    assert [m["content"] for m in h.llm.requests[-1].messages] == ["next"]


async def test_a_blank_answer_is_said_to_be_empty_and_costs_nothing(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.llm.enqueue(Reply(text="   \n  "))
    assert (await h.ask(chat, "hello")).text == html_to_text(texts.LLM_EMPTY_ANSWER)
    await h.settle()
    async with h.services() as services:
        assert sum((await services.quota.used_today(chat)).values()) == 0
    assert await stored_rows(h, chat) == (0, 0)


async def test_an_answer_cut_off_by_the_length_limit_says_how_to_get_the_rest(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.llm.enqueue(Reply(text="This is cut mid", finish_reason="length"))
    h.tg.user_message(chat, "hello")
    await h.tg.wait_until(lambda: any(CUT_OFF_NOTE in t for t in h.tg.sent_texts(chat)), 15, "the cut-off answer")
    await h.settle()
    assert h.tg.sent_texts(chat) == [f"This is cut mid\n\n{CUT_OFF_NOTE}"]
    assert "продолжай" in CUT_OFF_NOTE


async def test_an_answer_the_content_filter_ended_says_so(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.llm.enqueue(Reply(text="Начало ответа", finish_reason="content_filter"))
    h.tg.user_message(chat, "hello")
    note = html_to_text(texts.FILTERED_MARK)
    await h.tg.wait_until(lambda: any(note in t for t in h.tg.sent_texts(chat)), 15, "the filtered answer")
    await h.settle()
    assert h.tg.sent_texts(chat) == [f"Начало ответа\n\n{note}"]
    assert (await h.ask(chat, "ok")).text == "Echo: ok"  # a complete answer has no note


# --- the renderer ---------------------------------------------------------------------------------------------


async def test_a_stopped_answer_that_shows_nothing_but_was_counted_does_not_say_it_was_not() -> None:
    out = FakeOutput()
    r = renderer(out)
    await r.stream(Stream(["#"])())
    await r.finish("#", stopped=True, charged=True)
    assert [m.html for m in out.visible()] == [texts.STOPPED_MARK]

    out = FakeOutput()
    r = renderer(out)
    await r.stream(Stream([" \n"])())
    await r.finish(" \n", stopped=True, charged=False)
    assert [m.html for m in out.visible()] == [texts.STOPPED_EMPTY]


async def test_a_long_cut_off_answer_keeps_every_message_within_the_limit() -> None:
    out = FakeOutput()
    text = "слово " * 3000
    r = renderer(out)
    await r.stream(Stream([text])())
    await r.finish(text, stopped=False, charged=True, cut_off=True)
    shown = [m.html for m in out.visible()]
    assert len(shown) >= 2
    assert all(utf16_len(html_to_text(m)) <= 4096 for m in shown)
    assert shown[-1].endswith(texts.CUT_OFF_MARK)
    assert sum(html_to_text(m).count("слово") for m in shown) == 3000
