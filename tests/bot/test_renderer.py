"""The answer renderer against a recording stand-in for Telegram: chunks, fallbacks, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter
from aiogram.methods import SendMessage, SendMessageDraft
from aiogram.types import InlineKeyboardMarkup

from pomogator.bot import texts
from pomogator.bot.answer.messages import MessageChain
from pomogator.bot.answer.output import ChatGone, ChatOutput, DraftsUnavailable
from pomogator.bot.answer.renderer import AnswerRenderer
from pomogator.bot.keyboards import make_stop_keyboard
from pomogator.errors import LLMUnavailable
from pomogator.services.formatting import html_to_text, render_answer, utf16_len
from tests.fakes.telegram_html import check_message


@dataclass
class Shown:
    html: str
    markup: InlineKeyboardMarkup | None
    deleted: bool = False


@dataclass
class FakeOutput:
    """Records what the renderer does; flags make Telegram refuse drafts, lose messages or block the bot."""

    refuse_drafts: bool = False
    lose_edits: bool = False
    gone_after: int | None = None
    messages: dict[int, Shown] = field(default_factory=dict)
    drafts: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.gone_after is not None and len(self.calls) > self.gone_after:
            raise ChatGone("Forbidden: bot was blocked by the user")

    async def typing(self) -> None:
        self._call("typing")

    async def send(self, html: str, markup: InlineKeyboardMarkup | None = None) -> int:
        self._call("send")
        message_id = len(self.messages) + 1
        self.messages[message_id] = Shown(html, markup)
        return message_id

    async def edit(self, message_id: int, html: str, markup: InlineKeyboardMarkup | None = None) -> bool:
        self._call("edit")
        if self.lose_edits or self.messages[message_id].deleted:
            self.messages[message_id].deleted = True
            return False
        self.messages[message_id] = Shown(html, markup)
        return True

    async def draft(self, draft_id: int, html: str) -> None:
        self._call("draft")
        if self.refuse_drafts:
            raise DraftsUnavailable("TEXTDRAFT_PEER_INVALID")
        self.drafts.append(html)

    async def delete(self, message_id: int) -> None:
        self._call("delete")
        self.messages[message_id].deleted = True

    def visible(self) -> list[Shown]:
        return [m for m in self.messages.values() if not m.deleted]


class Stream:
    """An async generator of pieces that records whether it was closed early."""

    def __init__(self, pieces: list[str], delay: float = 0.0, fail: Exception | None = None) -> None:
        self.pieces = pieces
        self.delay = delay
        self.fail = fail
        self.closed_early = False

    async def __call__(self) -> AsyncIterator[str]:
        finished = False
        try:
            for piece in self.pieces:
                await asyncio.sleep(self.delay)
                yield piece
            if self.fail is not None:
                raise self.fail
            finished = True
        finally:
            self.closed_early = not finished and self.fail is None


def renderer(out: FakeOutput, drafts: bool = True, **kwargs: Any) -> AnswerRenderer:
    return AnswerRenderer(
        out,  # type: ignore[arg-type]
        7,
        drafts=drafts,
        interval=kwargs.pop("interval", 0.0),
        **kwargs,
    )


def words(n: int) -> list[str]:
    return [f"слово{i} " for i in range(n)]


async def test_a_long_answer_becomes_several_messages_while_drafting_the_rest() -> None:
    out = FakeOutput()
    paragraphs = ["\n\n".join("".join(words(80)) for _ in range(8))]
    text = "".join(paragraphs)
    pieces = [text[i : i + 50] for i in range(0, len(text), 50)]
    r = renderer(out)
    assert await r.stream(Stream(pieces, delay=0.001)()) == text
    # Complete chunks were sent before the answer ended.
    assert out.calls.index("send") < len(out.calls) - 1
    await r.finish(text, stopped=False)
    shown = [m.html for m in out.visible()]
    assert shown == render_answer(text)
    assert len(shown) >= 2
    assert all(utf16_len(html_to_text(m)) <= 4096 for m in shown)
    assert all(m.markup is None for m in out.visible())
    assert out.drafts and "edit" not in out.calls


class Completion:
    """Pieces the model has finished writing, then the stream's end (usage, storing the answer) ``end`` s later."""

    def __init__(self, pieces: list[str], end: float) -> None:
        self.pieces = pieces
        self.end = end
        self.complete = False

    async def __call__(self) -> AsyncIterator[str]:
        for piece in self.pieces:
            yield piece
        self.complete = True
        await asyncio.sleep(self.end)


async def test_text_the_model_has_finished_goes_straight_to_its_message() -> None:
    out = FakeOutput()
    stream = Completion(["Готово, ", "всё сразу."], end=0.05)
    r = renderer(out, complete=lambda: stream.complete, end_grace=1.0)
    text = await r.stream(stream())
    await r.finish(text, stopped=False)
    assert out.calls == ["send"]
    assert [m.html for m in out.visible()] == ["Готово, всё сразу."]


async def test_finished_text_is_drafted_when_the_end_of_the_stream_is_slow() -> None:
    out = FakeOutput()
    stream = Completion(["Готово."], end=0.3)
    r = renderer(out, complete=lambda: stream.complete, end_grace=0.05)
    text = await r.stream(stream())
    assert out.drafts == ["Готово."]
    await r.finish(text, stopped=False)
    assert out.calls == ["draft", "send"]


async def test_text_still_being_written_is_drafted_at_once() -> None:
    out = FakeOutput()
    stream = Stream(["Пишу", " дальше"], delay=0.05)
    r = renderer(out, complete=lambda: False, end_grace=1.0)
    await r.stream(stream())
    assert out.drafts[0] == "Пишу"


class PausingStream:
    """The first words, a pause of ``pause`` seconds (a model thinking between bursts), then the rest."""

    def __init__(self, pause: float) -> None:
        self.pause = pause

    async def __call__(self) -> AsyncIterator[str]:
        yield "Первые слова"
        await asyncio.sleep(self.pause)
        yield ", и остальное."


@pytest.mark.parametrize("drafts", [True, False])
async def test_a_draft_is_sent_again_while_the_model_pauses_longer_than_telegram_shows_one(drafts: bool) -> None:
    out = FakeOutput()
    r = renderer(out, drafts=drafts, draft_refresh=0.2)
    await r.stream(PausingStream(0.7)())
    if drafts:
        # Shown at once, then again every 0.2 s of the pause: Telegram would have let the first one vanish.
        assert len(out.drafts) >= 4 and set(out.drafts) == {"Первые слова"}
    else:
        # An edited message stays on screen: nothing to send again.
        assert out.calls == ["send"]
    quick = FakeOutput()
    await renderer(quick, draft_refresh=0.2).stream(PausingStream(0.1)())
    assert quick.drafts == ["Первые слова"]  # the rest goes straight to the message


async def test_a_draft_is_not_sent_again_during_a_flood_wait_or_after_stop() -> None:
    out = FakeOutput()
    stop = asyncio.Event()
    r = renderer(out, draft_refresh=0.1, stop=stop)
    stream = PausingStream(0.5)()
    first = await anext(stream)

    async def pieces() -> AsyncIterator[str]:
        yield first
        await asyncio.sleep(0.05)
        stop.set()
        async for piece in stream:
            yield piece

    await r.stream(pieces())
    assert out.drafts == ["Первые слова"]
    held = FakeOutput()
    r = renderer(held, draft_refresh=0.1)
    r._throttle.defer(5.0)  # Telegram asked for 5 s: no draft at all until then
    await r.stream(PausingStream(0.5)())
    assert held.drafts == []


async def test_without_drafts_one_message_is_edited_with_a_stop_button() -> None:
    out = FakeOutput(refuse_drafts=True)
    refused: list[bool] = []
    r = renderer(out, on_drafts_refused=lambda: refused.append(True))
    text = "".join(words(30))
    await r.stream(Stream(words(30), delay=0.002)())
    assert refused == [True]
    assert out.calls.count("draft") == 1
    live = out.visible()
    assert len(live) == 1 and live[0].markup == make_stop_keyboard(7)
    await r.finish(text, stopped=False)
    assert [(m.html, m.markup) for m in out.visible()] == [(render_answer(text)[0], None)]


async def test_a_stopped_answer_says_so_and_an_empty_one_too() -> None:
    out = FakeOutput()
    r = renderer(out)
    await r.stream(Stream(words(5))())
    await r.finish("".join(words(5)), stopped=True)
    assert out.visible()[-1].html.endswith(texts.STOPPED_MARK)

    out = FakeOutput()
    r = renderer(out)
    await r.stream(Stream([])())
    await r.finish("", stopped=True)
    assert [m.html for m in out.visible()] == [texts.STOPPED_EMPTY]


async def test_an_answer_the_content_filter_ended_says_so() -> None:
    out = FakeOutput()
    r = renderer(out)
    await r.stream(Stream(["Начало ответа"])())
    await r.finish("Начало ответа", stopped=False, charged=True, filtered=True)
    assert [m.html for m in out.visible()] == ["Начало ответа\n\n" + texts.FILTERED_MARK]


async def test_an_unsaved_long_answer_says_so_after_its_other_ending_within_the_limit() -> None:
    out = FakeOutput()
    text = "слово " * 682  # one message's worth: with the endings it needs two
    r = renderer(out)
    await r.stream(Stream([text])())
    await r.finish(text, stopped=False, charged=True, cut_off=True, unsaved=True)
    shown = [m.html for m in out.visible()]
    assert len(shown) == 2
    assert all(utf16_len(html_to_text(m)) <= 4096 for m in shown)
    assert shown[-1].endswith(texts.CUT_OFF_MARK + "\n\n" + texts.UNSAVED_MARK)
    assert sum(html_to_text(m).count("слово") for m in shown) == 682


async def test_a_message_deleted_by_the_user_is_sent_again() -> None:
    out = FakeOutput(refuse_drafts=True)
    r = renderer(out)
    await r.stream(Stream(words(10), delay=0.002)())
    out.lose_edits = True
    await r.finish("".join(words(10)) + "конец", stopped=False)
    visible = out.visible()
    assert len(visible) == 1 and visible[0].html.endswith("конец")


async def test_a_message_deleted_inside_an_answer_comes_again_in_its_place() -> None:
    out = FakeOutput()
    chain = MessageChain(out)  # type: ignore[arg-type]
    for index, chunk in enumerate(["one", "two", "three"]):
        await chain.put(index, chunk)
    out.messages[1].deleted = True  # the user deletes the first message while the answer streams
    await chain.sync(["ONE", "two", "three"])
    assert [m.html for m in out.visible()] == ["ONE", "two", "three"]
    await chain.sync(["ONE", "two", "THREE"])  # the chain follows the messages sent again
    assert [m.html for m in out.visible()] == ["ONE", "two", "THREE"]


async def test_a_gone_chat_ends_the_stream_early() -> None:
    out = FakeOutput(gone_after=2)
    stream = Stream(words(200), delay=0.002)
    r = renderer(out)
    with pytest.raises(ChatGone):
        await r.stream(stream())
    assert stream.closed_early


@pytest.mark.parametrize("drafts", [True, False])
async def test_an_answer_the_model_broke_off_keeps_what_it_wrote_and_says_so(drafts: bool) -> None:
    # Long enough for two messages: the first was already final when the model failed.
    out = FakeOutput()
    r = renderer(out, drafts=drafts)
    pieces = words(700)
    with pytest.raises(LLMUnavailable):
        await r.stream(Stream(pieces, delay=0.0005, fail=LLMUnavailable("mid-stream"))())
    visible = out.visible()
    assert len(visible) == 2 and all(m.markup is None for m in visible)
    shown = html_to_text("\n\n".join(m.html for m in visible))
    assert shown.startswith("слово0 ") and "слово699" in shown
    assert visible[-1].html.endswith(texts.BROKEN_OFF_MARK)


@dataclass
class FloodedDrafts(FakeOutput):
    """Telegram answers the first draft with a flood wait of minutes (drafts are not retried: it reaches the
    renderer whole)."""

    def __post_init__(self) -> None:
        self.flooded = False

    async def draft(self, draft_id: int, html: str) -> None:
        if not self.flooded:
            self.flooded = True
            method = SendMessageDraft(chat_id=1, draft_id=draft_id, text=html)
            raise TelegramRetryAfter(method, "Too Many Requests: retry after 300", 300)
        await super().draft(draft_id, html)


@pytest.mark.parametrize("broken_off", [False, True])
async def test_a_flood_wait_on_a_draft_holds_the_final_message_one_interval_at_most(broken_off: bool) -> None:
    # The final message's own call waits out a flood limit, or gives the answer up, within its budget.
    out = FloodedDrafts()
    r = renderer(out, interval=0.2)
    fail = LLMUnavailable("mid-stream") if broken_off else None
    async with asyncio.timeout(3):
        try:
            text = await r.stream(Stream(words(20), delay=0.01, fail=fail)())
            await r.finish(text, stopped=False)
        except LLMUnavailable:
            assert broken_off
    assert out.flooded and out.drafts == []
    [message] = out.visible()
    assert html_to_text(message.html).startswith("слово0 ")


async def test_a_failure_that_is_not_the_models_removes_what_was_shown() -> None:
    out = FakeOutput(refuse_drafts=True)
    r = renderer(out)
    with pytest.raises(RuntimeError):
        await r.stream(Stream(words(20), delay=0.002, fail=RuntimeError("the database went away"))())
    assert out.messages and not out.visible()


async def test_typing_is_shown_until_the_first_words() -> None:
    out = FakeOutput()
    r = renderer(out, typing_every=0.01, typing_after=0.02)
    await r.stream(Stream(["a", "b"], delay=0.1)())
    assert out.calls[0] == "typing"
    first_draft = out.calls.index("draft")
    assert "typing" not in out.calls[first_draft:]


async def test_no_typing_when_the_first_words_come_at_once() -> None:
    out = FakeOutput()
    r = renderer(out, typing_every=0.01, typing_after=0.2)
    await r.stream(Stream(["a", "b"], delay=0.01)())
    await r.finish("ab", stopped=False)
    assert "typing" not in out.calls
    assert out.visible()


async def test_nothing_more_is_shown_live_once_the_user_pressed_stop() -> None:
    out = FakeOutput()
    stop = asyncio.Event()
    r = renderer(out, stop=stop)

    async def pieces() -> AsyncIterator[str]:
        yield "начало "
        await asyncio.sleep(0.01)
        stop.set()
        for word in words(20):
            await asyncio.sleep(0.001)
            yield word

    await r.stream(pieces())
    assert out.drafts == ["начало"]


async def test_every_draft_of_an_answer_with_html_tags_and_refused_links_is_valid() -> None:
    """Drafts show the answer half-written: a tag half-typed or not yet closed, a link without its address yet."""
    out = FakeOutput()
    text = (
        "E = mc<sup>2</sup> и H<sub>2</sub>O, <kbd>Ctrl</kbd>+<b>жирный</b>\n\n"
        "[сервер](http://localhost:8000), https://e.com/__init__.py и 2*3*4\n\n1. раз\n1. два\n\n[1]: https://a.com"
    )
    r = renderer(out)
    await r.stream(Stream([text[i : i + 3] for i in range(0, len(text), 3)])())
    await r.finish(text, stopped=False)
    [final] = out.visible()
    for html in [*out.drafts, final.html]:
        check_message(html, "HTML")
    assert html_to_text(final.html) == (
        "E = mc² и H₂O, Ctrl+жирный\n\n"
        "сервер (http://localhost:8000), https://e.com/__init__.py и 2*3*4\n\n1. раз\n2. два\n\n[1]: https://a.com"
    )


async def test_html_telegram_refuses_goes_as_plain_text_that_keeps_the_link_addresses() -> None:
    sent: list[tuple[str, dict[str, None]]] = []

    async def send(text: str, mode: dict[str, None]) -> int:
        sent.append((text, mode))
        if not mode:
            raise TelegramBadRequest(SendMessage(chat_id=1, text=text), "Bad Request: Url host is empty")
        return 1

    [html] = render_answer(
        "1. Скачайте [Python](https://www.python.org/).\n2. Документация: [docs.python.org](https://docs.python.org/)."
    )
    assert await ChatOutput._html_or_plain(html, send) == 1
    assert sent[-1] == (
        "1. Скачайте Python (https://www.python.org/).\n2. Документация: docs.python.org.",
        {"parse_mode": None},
    )
