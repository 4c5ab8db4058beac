"""The message path end to end: streaming, stopping, long and nasty answers, quota, model errors, Telegram faults."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from pomogator.bot import texts
from pomogator.llm.catalog import load_catalog
from pomogator.services.conversations import StoredConversation
from pomogator.services.formatting import html_to_text, markdown_to_html, render_answer, utf16_len
from tests.bot.harness import BotHarness
from tests.fakes.openai_server import Error, Hang, MidStreamError, Moderation, Reply, split_tokens
from tests.fakes.telegram_html import check_message
from tests.fakes.telegram_server import SentMessage

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

DEFAULT = load_catalog().default
OTHER = next(m for m in load_catalog().models if not m.premium_only and m.id != DEFAULT.id)
ANSWER_METHODS = {"sendchataction", "sendmessagedraft", "sendmessage", "editmessagetext"}
# The model's silence the bot waits out. The fake model runs in the test process, which a loaded machine can stall
# for a second or two: a shorter timeout would break answers off at random.
MODEL_TIMEOUT_S = 8
# "typing…" is sent once the first words take longer than this (the renderer's TYPING_AFTER, 0.3 s, less a margin).
AT_ONCE_S = 0.25


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def harness(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    workdir: Path = tmp_path_factory.mktemp("answers")
    async with BotHarness.open(workdir, env={"POMOGATOR_OPENROUTER_TIMEOUT": str(MODEL_TIMEOUT_S)}) as h:
        yield h


def calls_for(h: BotHarness, chat: int, since: int = 0) -> list[str]:
    return [
        call.method.lower()
        for call in h.tg.calls[since:]
        if call.method.lower() in ANSWER_METHODS and str(call.params.get("chat_id")) == str(chat)
    ]


async def used_today(h: BotHarness, chat: int) -> int:
    async with h.services() as services:
        return sum((await services.quota.used_today(chat)).values())


def visible(text: str) -> str:
    return re.sub(r"\s+", "", text)


async def edited_answer(h: BotHarness, chat: int, after: int) -> SentMessage:
    """The answer of the edit path, once it is final: the model is done and the Stop button is gone."""

    def done() -> bool:
        messages = h.messages_after(chat, after)
        return bool(messages) and not messages[-1].buttons and h.llm.in_flight == 0

    await h.tg.wait_until(done, 20, "the final answer")
    await h.settle()
    return h.messages_after(chat, after)[-1]


async def test_a_slow_answer_is_streamed_as_drafts_then_sent_formatted(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.llm.enqueue(Reply(text="**Итак**, " + " ".join(f"слово{i}" for i in range(40)), ttft=0.6, tokens_per_second=14))
    since = len(h.tg.calls)
    h.tg.user_message(chat, "расскажи")
    answer = await h.tg.wait_for_message(chat, timeout=15)
    await h.settle()
    drafts = h.tg.drafts(chat)
    assert drafts.count >= 2
    assert len(drafts.draft_ids) == 1
    final_text = answer.text or ""
    assert final_text.startswith("Итак, слово0") and final_text.endswith("слово39")
    assert answer.entities and answer.entities[0]["type"] == "bold"
    for frame in drafts.frames:
        assert final_text.startswith(frame.text)
        assert frame.parse_mode == "HTML"
    draft_call = h.tg.calls_of("sendMessageDraft")[-1]
    assert draft_call.params.get("can_stop") is True
    methods = calls_for(h, chat, since)
    assert methods[0] == "sendchataction"
    assert methods[-1] == "sendmessage"
    assert "editmessagetext" not in methods


async def test_an_answer_that_starts_at_once_shows_no_typing(harness: BotHarness) -> None:
    """The renderer's unit tests cover this with a controlled stream; here the running bot is checked when its
    answer did come at once, which only a machine that is not loaded can tell."""
    h = harness
    chat = h.new_chat()
    h.llm.enqueue(Reply(text="Сразу готово."))
    since = len(h.tg.calls)
    sent_at = time.monotonic()
    h.tg.user_message(chat, "быстро")
    answer = await h.tg.wait_for_message(chat, timeout=15)
    await h.settle()
    assert answer.text == "Сразу готово."
    # The typing timer starts after the bot got the message, so not before it was sent: an answer sent less than
    # AT_ONCE_S after that came before the timer could fire.
    [answered] = [
        c for c in h.tg.calls[since:] if c.method.lower() == "sendmessage" and str(c.params.get("chat_id")) == str(chat)
    ]
    if answered.time - sent_at >= AT_ONCE_S:
        pytest.skip(f"the answer took {answered.time - sent_at:.2f}s on this machine: not at once")
    assert "sendchataction" not in calls_for(h, chat, since)


async def test_a_three_second_answer_costs_few_telegram_calls(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.llm.enqueue(Reply.slow(30, 3.0))
    since = len(h.tg.calls)
    h.tg.user_message(chat, "go")
    await h.tg.wait_for_message(chat, timeout=15)
    await h.settle()
    methods = calls_for(h, chat, since)
    assert methods.count("sendmessage") == 1
    assert methods.count("sendmessagedraft") >= 2
    assert len(methods) <= 6, methods


async def test_stopping_a_draft_keeps_shows_and_stores_the_partial_answer(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.llm.enqueue(Reply.slow(400, 40.0))
    cancelled = h.llm.cancelled_streams
    h.tg.user_message(chat, "long story")
    await h.tg.wait_until(lambda: (h.tg.drafts(chat).latest_text or "").count("tok") >= 3, 15, "a draft")
    draft = h.tg.drafts(chat).latest
    assert draft is not None
    h.stop_draft(chat, draft.draft_id)
    answer = await h.tg.wait_for_message(chat, timeout=15)
    await h.settle()
    text = answer.text or ""
    assert text.startswith("tok0 tok1 tok2")
    assert text.endswith("Ответ остановлен")
    assert "tok399" not in text
    await h.llm.wait_for_cancelled_streams(cancelled + 1)
    async with h.services() as services:
        history = await services.chat.clear_context(chat)
        assert history == 2  # the question and the partial answer were stored
    assert await used_today(h, chat) == 1


async def test_where_drafts_fail_the_answer_is_edited_in_place_and_the_stop_button_works(
    harness: BotHarness,
) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.fail_next("sendMessageDraft", 400, "Bad Request: TEXTDRAFT_PEER_INVALID", chat_id=chat)
    h.llm.enqueue(Reply.slow(400, 40.0))
    h.tg.user_message(chat, "long story")
    live = await h.tg.wait_for_message(chat, lambda m: bool(m.buttons) and (m.text or "").count("tok") >= 3, 15)
    assert live.button_texts == [texts.STOP_BUTTON]
    answer = await h.press(chat, live, texts.STOP_BUTTON)
    assert answer.get("text") == texts.STOPPING
    final = h.tg.message(chat, live.message_id)
    await h.tg.wait_until(lambda: not final.buttons, 10, "the final edit")
    await h.settle()
    assert not final.buttons
    assert (final.text or "").startswith("tok0 tok1") and (final.text or "").endswith("Ответ остановлен")
    assert len(h.messages_after(chat, h.tg.last_user_message_id(chat))) == 1
    # This chat keeps being answered by edits.
    drafts = h.tg.drafts(chat).count
    h.llm.enqueue(Reply.slow(20, 1.5))
    h.tg.user_message(chat, "again")
    reply = await edited_answer(h, chat, h.tg.last_user_message_id(chat))
    assert (reply.text or "").endswith("tok19") and not reply.buttons
    assert h.tg.drafts(chat).count == drafts


async def test_a_stop_pressed_once_the_model_has_written_everything_is_told_the_answer_is_ready(
    harness: BotHarness,
) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.fail_next("sendMessageDraft", 400, "Bad Request: TEXTDRAFT_PEER_INVALID", chat_id=chat)
    # The usage comes 4 s after the last word (within the timeout), as OpenRouter's may while it works out the cost:
    # the message with the button shows meanwhile. The text comes in one chunk: a first word shown alone would carry
    # the button while the whole text, shown once the answer ended, would not.
    h.llm.enqueue(Reply(text="Готово: всё написано.", chunk_size=10, usage_delay=MODEL_TIMEOUT_S / 2))
    h.tg.user_message(chat, "коротко")
    live = await h.tg.wait_for_message(chat, lambda m: bool(m.buttons) and "написано" in (m.text or ""), 15)
    answer = await h.press(chat, live, texts.STOP_BUTTON)
    assert answer.get("text") == texts.ALREADY_FINISHED
    final = h.tg.message(chat, live.message_id)
    await h.tg.wait_until(lambda: not final.buttons, 10, "the final edit")
    await h.settle()
    assert final.text == "Готово: всё написано."
    assert await used_today(h, chat) == 1


async def test_a_ten_thousand_character_answer_arrives_complete_in_several_messages(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    paragraphs = [f"Абзац {i}: " + " ".join(f"слово{i}_{j}" for j in range(60)) for i in range(13)]
    paragraphs.insert(5, "сплошной" * 300)  # one 2400-character word
    markdown = "\n\n".join(paragraphs)
    assert len(markdown) > 10_000
    h.llm.enqueue(Reply(text=markdown, tokens_per_second=400, chunk_size=3))
    h.tg.user_message(chat, "много")
    after = h.tg.last_user_message_id(chat)

    def complete() -> bool:
        shown = "".join(m.text or "" for m in h.messages_after(chat, after))
        return visible(shown) == visible(markdown)

    await h.tg.wait_until(complete, 30, "the whole answer")
    await h.settle()
    messages = h.messages_after(chat, after)
    assert len(messages) >= 3
    for message in messages:
        assert message.parse_mode == "HTML"
        assert utf16_len(message.text or "") <= 4096
        assert not message.buttons
    assert visible("".join(m.text or "" for m in messages)) == visible(markdown)


NASTY = """# Заголовок с <script>alert(1)</script> & "кавычками"

**жирный *курсив** незакрытый* и __подчёркивание__ a < b > c &amp; &nbsp; &#x1F600;

- пункт [ссылка](javascript:alert(1)) и [нормальная](https://example.com/?a=1&b=<2>)
  - вложенный `код с <тегами> & амперсандом`
1. нумерованный ~~зачёркнутый~~

> цитата
>> вложенная цитата с **жирным

| колонка | другая |
|---|---|
| <b>ячейка</b> | `x` |

```python
def f(x):
    return x < 1 and "<i>"
```

<div>сырой html</div> 👨‍👩‍👧‍👦 [незакрытая](http://
```
незакрытый блок кода <b>"""


async def test_nasty_markdown_arrives_as_valid_html(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.llm.enqueue(Reply(text=NASTY, tokens_per_second=40))
    since = len(h.tg.calls)
    h.tg.user_message(chat, "покажи разметку")
    after = h.tg.last_user_message_id(chat)
    await h.tg.wait_for_message(chat, timeout=20)
    await h.settle()
    messages = h.messages_after(chat, after)
    assert len(messages) == 1
    assert messages[0].parse_mode == "HTML"
    assert messages[0].html == markdown_to_html(NASTY)
    assert "<script>" in (messages[0].text or "")
    assert h.tg.drafts(chat).count >= 2
    # Which prefixes were drafted depends on timing: the next test checks every one of them.
    failed = [c for c in h.tg.calls[since:] if c.ok is False and c.method.lower() in {"sendmessage", "editmessagetext"}]
    assert failed == []


async def test_every_draft_of_nasty_markdown_is_html_telegram_takes() -> None:
    prefixes = ["".join(split_tokens(NASTY)[:count]) for count in range(1, len(split_tokens(NASTY)) + 1)]
    for prefix in prefixes:
        for chunk in render_answer(prefix):
            check_message(chunk, "HTML")


@pytest.mark.parametrize(
    "refusal",
    [
        'Bad Request: can\'t parse entities: Unsupported start tag "x" at byte offset 0',
        # A link whose address Telegram does not take (a model's "[link](http://)").
        "Bad Request: Wrong message entity: Wrong URL host",
        "Bad Request: Url host is empty",
    ],
)
async def test_html_rejected_by_telegram_is_resent_as_plain_text(harness: BotHarness, refusal: str) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.fail_next("sendMessage", 400, refusal, chat_id=chat)
    reply = await h.ask(chat, "**важно**")
    await h.settle()
    assert reply.text == "Echo: важно"
    assert reply.parse_mode is None


PARSE_REFUSAL = 'Bad Request: can\'t parse entities: Unsupported start tag "x" at byte offset 0'


async def test_a_draft_whose_html_is_rejected_is_drafted_as_plain_text(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.fail_next("sendMessageDraft", 400, PARSE_REFUSAL, chat_id=chat)
    h.llm.enqueue(Reply.slow(20, 2.0))
    h.tg.user_message(chat, "go")
    reply = await h.tg.wait_for_message(chat, timeout=20)
    await h.settle()
    assert reply.text == " ".join(f"tok{i}" for i in range(20))
    # The same draft went again as plain text, and the answer went on as drafts (not as an edited message).
    frames = h.tg.drafts(chat).frames
    assert frames[0].parse_mode is None and frames[0].text
    assert len(frames) >= 2
    assert [c for c in h.tg.calls_of("editMessageText") if c.params.get("chat_id") == chat] == []


async def test_an_edit_whose_html_is_rejected_is_made_as_plain_text(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.fail_next("sendMessageDraft", 400, "Bad Request: TEXTDRAFT_PEER_INVALID", chat_id=chat)
    h.tg.fail_next("editMessageText", 400, PARSE_REFUSAL, chat_id=chat)
    h.llm.enqueue(Reply.slow(30, 2.5))
    h.tg.user_message(chat, "go")
    after = h.tg.last_user_message_id(chat)
    answer = await edited_answer(h, chat, after)
    assert answer.text == " ".join(f"tok{i}" for i in range(30))
    edits = [c for c in h.tg.calls_of("editMessageText") if c.params.get("chat_id") == chat]
    refused = next(index for index, call in enumerate(edits) if call.ok is False)
    assert edits[refused].params.get("parse_mode") == "HTML"
    assert edits[refused + 1].ok and "parse_mode" not in edits[refused + 1].params
    assert edits[refused + 1].params["message_id"] == edits[refused].params["message_id"]


async def test_flood_limits_on_drafts_and_messages_are_waited_out(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.fail_next("sendMessageDraft", 429, retry_after=1, chat_id=chat, times=2)
    h.tg.fail_next("sendMessage", 429, retry_after=1, chat_id=chat)
    floods = h.tg.flood_errors
    # Long enough for a second draft after the first one's wait of a second, even on a slow machine.
    h.llm.enqueue(Reply.slow(30, 5.0))
    h.tg.user_message(chat, "go")
    reply = await h.tg.wait_for_message(chat, timeout=20)
    await h.settle()
    assert h.tg.flood_errors == floods + 3
    assert (reply.text or "") == " ".join(f"tok{i}" for i in range(30))


async def test_flood_limits_on_edits_are_waited_out(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.fail_next("sendMessageDraft", 400, "Bad Request: TEXTDRAFT_PEER_INVALID", chat_id=chat)
    h.tg.fail_next("editMessageText", 429, retry_after=1, chat_id=chat, times=2)
    floods = h.tg.flood_errors
    h.llm.enqueue(Reply.slow(40, 3.0))
    h.tg.user_message(chat, "go")
    after = h.tg.last_user_message_id(chat)
    await edited_answer(h, chat, after)
    assert h.tg.flood_errors == floods + 2
    messages = h.messages_after(chat, after)
    assert len(messages) == 1
    assert messages[0].text == " ".join(f"tok{i}" for i in range(40))
    assert not messages[0].buttons


async def test_a_used_up_quota_refuses_without_calling_the_model(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.use_up_quota(chat)
    requests = h.llm.request_count
    refusal = await h.ask(chat, "ещё вопрос")
    text = refusal.text or ""
    assert DEFAULT.title in text and str(DEFAULT.free_daily) in text
    # This bot takes no payments (no YooKassa shop): premium is not offered where it cannot be bought.
    assert "обновится" in text and "/billing" not in text and text.endswith("/model.")
    assert re.search(r"\d\d\.\d\d\.\d{4} 00:00", text)
    await h.settle()
    assert h.llm.request_count == requests


async def test_parallel_messages_are_answered_in_order_and_the_quota_decides(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.use_up_quota(chat, leave=3)
    requests = h.llm.request_count
    h.llm.max_concurrency = 0
    for _ in range(3):
        h.llm.enqueue(Reply.slow(8, 0.6))
    after = h.tg.last_user_message_id(chat)
    for i in range(10):
        h.tg.user_message(chat, f"q{i}")
    await h.tg.wait_until(lambda: len(h.messages_after(chat, after)) >= 10, 30, "ten replies")
    await h.settle()
    assert h.llm.request_count == requests + 3
    assert h.llm.max_concurrency == 1
    assert [r.last_user_text for r in h.llm.requests[-3:]] == ["q0", "q1", "q2"]
    replies = [m.text or "" for m in h.messages_after(chat, after)]
    assert len(replies) == 10
    assert all(r == " ".join(f"tok{i}" for i in range(8)) for r in replies[:3])
    assert all("лимит" in r for r in replies[3:])
    assert await used_today(h, chat) == DEFAULT.free_daily


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (Error(status=429), texts.LLM_RATE_LIMITED),
        (Error(status=500, message="Internal error"), texts.LLM_UNAVAILABLE),
        (Error(status=502, message="Provider down"), texts.LLM_UNAVAILABLE),
        (Error(status=401, message="No auth credentials found"), texts.LLM_ACCOUNT_PROBLEM),
        (Error(status=402, message="Insufficient credits"), texts.LLM_ACCOUNT_PROBLEM),
        (Moderation(), texts.LLM_MODERATED),
        (Hang(seconds=30), texts.LLM_TIMEOUT),
        (Error(status=400, message="meta-llama/x:free is not a valid model ID"), texts.LLM_MODEL_GONE),
    ],
    ids=["429", "500", "502", "401", "402", "403-moderation", "timeout", "400-model-gone"],
)
async def test_model_errors_get_their_own_message_and_cost_nothing(
    harness: BotHarness, action: object, expected: str
) -> None:
    h = harness
    chat = h.new_chat()
    offset = h.bot.log_size()
    h.llm.enqueue(action)  # type: ignore[arg-type]
    h.tg.user_message(chat, "вопрос")
    after = h.tg.last_user_message_id(chat)
    reply = await h.tg.wait_for_message(chat, lambda m: m.text == expected, timeout=MODEL_TIMEOUT_S + 20)
    await h.settle()
    assert [m.message_id for m in h.messages_after(chat, after)] == [reply.message_id]
    assert "оплат" not in (reply.text or "").lower()
    assert await used_today(h, chat) == 0
    async with h.services() as services:
        assert await services.chat.clear_context(chat) == 0
    assert "Traceback" not in h.bot.log_since(offset)


async def test_code_the_model_goes_on_with_after_a_cut_off_is_shown_as_code(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    cut = "Вот код:\n\n```python\ndef calc(*args):\n    total = 0\n    for a in args:\n        total += a\n"
    h.llm.enqueue(Reply(text=cut, finish_reason="length"))
    first = await h.ask(chat, "напиши функцию суммы")
    assert html_to_text(texts.CUT_OFF_MARK) in (first.text or "")
    await h.settle()
    # Told to write «продолжай», the person does; the model goes on with the code without opening its block again.
    going_on = '        return total\n\n# Точка входа\nif __name__ == "__main__":\n    print(calc(1))\n```\n\nГотово.'
    h.llm.enqueue(Reply(text=going_on))
    after = h.tg.last_user_message_id(chat)
    h.tg.user_message(chat, "продолжай")
    await h.tg.wait_for_message(chat, lambda m: m.message_id > after, timeout=15)
    await h.settle()
    [shown] = h.messages_after(chat, h.tg.last_user_message_id(chat))
    assert shown.html == markdown_to_html(f"```python\n{going_on}")
    assert (shown.html or "").endswith("</code></pre>\n\nГотово.")
    async with h.services():  # kept as the model wrote it
        history = await StoredConversation(chat).history()
    assert history[-1].decoded() == going_on


async def test_an_answer_the_model_broke_off_keeps_its_text_and_costs_nothing(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    offset = h.bot.log_size()
    h.llm.enqueue(MidStreamError(after_text="половина ответа"))
    h.tg.user_message(chat, "вопрос")
    after = h.tg.last_user_message_id(chat)
    reply = await h.tg.wait_for_message(chat, lambda m: m.text == texts.LLM_UNAVAILABLE, timeout=15)
    await h.settle()
    kept, notice = h.messages_after(chat, after)
    assert kept.text == "половина ответа\n\n" + html_to_text(texts.BROKEN_OFF_MARK)
    assert notice.message_id == reply.message_id
    assert await used_today(h, chat) == 0
    async with h.services() as services:
        assert await services.chat.clear_context(chat) == 0
    assert "Traceback" not in h.bot.log_since(offset)


async def test_a_user_who_blocked_the_bot_does_not_stop_others_being_answered(harness: BotHarness) -> None:
    h = harness
    blocked, other = h.new_chat(), h.new_chat()
    offset = h.bot.log_size()
    await h.ask(blocked, "/start")
    async with h.services() as services:
        await services.users.set_model(blocked, OTHER.id)
    h.tg.block_user(blocked)
    # Abandoned at the bot's first call to the blocked chat: long enough not to end before that on a slow machine.
    h.llm.enqueue(Reply.slow(30, 6.0), model=OTHER.id)
    cancelled = h.llm.cancelled_streams
    h.tg.user_message(blocked, "are you there?")
    h.tg.user_message(other, "hello")
    reply = await h.tg.wait_for_message(other, timeout=15)
    await h.settle()
    assert reply.text == "Echo: hello"
    assert h.tg.sent_texts(blocked)[-1] != "Echo: are you there?"
    # The model's stream was abandoned and the request refunded.
    await h.llm.wait_for_cancelled_streams(cancelled + 1)
    assert await used_today(h, blocked) == 0
    assert h.bot.alive
    h.tg.unblock_user(blocked)
    again = await h.ask(blocked, "back")
    assert again.text == "Echo: back"
    assert "Traceback" not in h.bot.log_since(offset)


async def test_too_many_messages_get_one_notice_and_the_rest_are_ignored(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.use_up_quota(chat)
    after = h.tg.last_user_message_id(chat)
    for i in range(26):
        h.tg.user_message(chat, f"spam {i}")
    await h.tg.wait_until(lambda: len(h.messages_after(chat, after)) >= 21, 30, "replies")
    await asyncio.sleep(0.5)
    await h.settle()
    replies = [m.text or "" for m in h.messages_after(chat, after)]
    assert replies.count(texts.FLOOD) == 1
    assert len(replies) == 21
    assert sum("лимит" in r for r in replies) == 20
