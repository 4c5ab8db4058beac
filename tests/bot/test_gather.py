"""Albums, split long texts and forwarded messages are one request: the Gatherer in a dispatcher, then end to end
through the bot."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import TelegramMethod
from aiogram.types import Message, Update

from pomogator.bot import files_texts, texts
from pomogator.bot.comments import ANSWERS_COMMENT, Comment, CommentGuard
from pomogator.bot.inline_filters import run_filters_inline
from pomogator.bot.middlewares import ChatOrderMiddleware, FloodGuard, FloodMiddleware, Gatherer, MemoryChatLocks
from pomogator.bot.middlewares.gather import SPLIT_TEXT_MIN, join_text, origin_name
from pomogator.services.files.request import MAX_ATTACHMENTS
from tests.bot.harness import BotHarness
from tests.fakes.openai_server import Reply
from tests.fakes.telegram_server import bot_command_entities
from tests.services.test_files import JPEG, make_png

CHAT = 7001
WINDOW = 0.15
STICKER: dict[str, Any] = {
    "file_id": "s",
    "file_unique_id": "s",
    "type": "regular",
    "width": 512,
    "height": 512,
    "is_animated": False,
    "is_video": False,
    "emoji": "👍",
}


# --- the Gatherer in a dispatcher, without Telegram ----------------------------------------------------------


@dataclass
class Seen:
    """What the handler was called with, in order."""

    calls: list[tuple[str, list[int]]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0
    # How long a text's answer takes, and whether something of it shows at once (a comment then stays with it).
    answer_time: float = 0.01
    shows_at_once: bool = False

    def record(self, text: str, ids: list[int]) -> None:
        self.calls.append((text, ids))
        if len(self.calls) >= self.expected:
            self.done.set()


@dataclass
class Rig:
    dispatcher: Dispatcher
    bot: Bot
    gatherer: Gatherer
    seen: Seen
    flood: FloodMiddleware
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def update(self, chat_id: int = CHAT, **fields: Any) -> Update:
        message_id = next(self.ids)
        message = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": chat_id, "is_bot": False, "first_name": "Test"},
            **fields,
        }
        return Update.model_validate({"update_id": message_id, "message": message}, context={"bot": self.bot})

    def text(self, text: str, chat_id: int = CHAT) -> Update:
        # Marked as Telegram marks it: "/help" is a command, "/etc/hosts" is not.
        return self.update(chat_id, text=text, entities=bot_command_entities(text))

    def forward(self, text: str, origin: dict[str, Any]) -> Update:
        return self.update(text=text, forward_origin=origin)

    def photo(self, group: str | None, caption: str | None = None) -> Update:
        fields: dict[str, Any] = {"photo": [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]}
        if group is not None:
            fields["media_group_id"] = group
        if caption is not None:
            fields["caption"] = caption
        return self.update(**fields)

    def forwarded_photo(self, origin: dict[str, Any], caption: str | None = None, group: str | None = None) -> Update:
        fields: dict[str, Any] = {
            "photo": [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}],
            "forward_origin": origin,
        }
        if caption is not None:
            fields["caption"] = caption
        if group is not None:
            fields["media_group_id"] = group
        return self.update(**fields)

    def forwarded_sticker(self, origin: dict[str, Any]) -> Update:
        return self.update(sticker=STICKER, forward_origin=origin)

    def forwarded_voice(self, origin: dict[str, Any]) -> Update:
        return self.update(voice={"file_id": "v", "file_unique_id": "v", "duration": 3}, forward_origin=origin)

    def forwarded_document(self, origin: dict[str, Any]) -> Update:
        document = {"file_id": "d", "file_unique_id": "d", "file_name": "a.txt", "mime_type": "text/plain"}
        return self.update(document=document, forward_origin=origin)

    async def feed(self, *updates: Update, expected: int) -> list[tuple[str, list[int]]]:
        """Hand the updates to the dispatcher as polling does (a task each, in order); wait for ``expected`` calls."""
        self.seen.expected = len(self.seen.calls) + expected
        self.seen.done.clear()
        tasks = [asyncio.create_task(self.dispatcher.feed_update(self.bot, u)) for u in updates]
        await asyncio.wait_for(self.seen.done.wait(), 10)
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        return self.seen.calls


class Offline(AiohttpSession):
    """No Telegram: a call fails a moment after it is made (the flood notice, here)."""

    async def make_request(self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None) -> Any:  # noqa: ASYNC109
        await asyncio.sleep(0.05)
        raise TelegramNetworkError(method=method, message="offline")


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    seen = Seen()
    gatherer = Gatherer(window=WINDOW)
    flood = FloodMiddleware(FloodGuard(1000))
    router = Router()

    @router.message(F.text.startswith("роль"))
    async def on_form_input(message: Message) -> None:
        # As a form's input handler: it takes a text, but does not answer it as the message path does.
        seen.record(f"form: {message.text}", [message.message_id])

    @router.message(F.text, flags={ANSWERS_COMMENT: True})
    async def on_text(message: Message, comment: Comment | None = None) -> None:
        # As the Answerer does: a text is kept from a forward after it once its answer shows.
        if comment is not None and seen.shows_at_once:
            comment.settle()
        await asyncio.sleep(seen.answer_time)  # an answer takes a while; later messages queue meanwhile
        if comment is not None and not comment.settle():
            return
        seen.record(message.text or "", [message.message_id])

    @router.message()
    async def on_other(message: Message, album: list[Message] | None = None) -> None:
        parts = album or [message]
        seen.record(message.caption or "", [m.message_id for m in parts])

    dispatcher = Dispatcher()
    dispatcher.update.outer_middleware.register(gatherer.arrivals)
    dispatcher.update.outer_middleware.register(flood)
    dispatcher.update.outer_middleware.register(ChatOrderMiddleware(MemoryChatLocks()))
    dispatcher.update.outer_middleware.register(gatherer.completion)
    dispatcher.message.middleware.register(CommentGuard())
    dispatcher.include_router(router)
    run_filters_inline([router])  # as the bot's routers do
    bot = Bot("42:TEST", session=Offline())
    try:
        yield Rig(dispatcher, bot, gatherer, seen, flood)
    finally:
        await bot.session.close()


def long_piece(n: int) -> str:
    return f"part{n} " + "слово" * (SPLIT_TEXT_MIN // 5)


async def test_an_album_reaches_the_handler_once_with_every_part(rig: Rig) -> None:
    calls = await rig.feed(rig.photo("g1", "what is this?"), rig.photo("g1"), rig.photo("g1"), expected=1)
    await asyncio.sleep(WINDOW * 2)  # nothing else comes later either
    assert calls == [("what is this?", [1, 2, 3])]
    assert len(rig.gatherer) == 0


async def test_pieces_of_a_split_text_become_one_message(rig: Rig) -> None:
    pieces = [long_piece(1), long_piece(2), "the end"]
    calls = await rig.feed(*(rig.text(p) for p in pieces), expected=1)
    # Telegram trims the pieces, so the space at each cut is put back.
    assert calls == [(" ".join(pieces), [1])]
    assert len(rig.gatherer) == 0


async def test_arrival_order_is_kept_around_an_album(rig: Rig) -> None:
    rig.seen.answer_time = WINDOW * 2  # the text's answer shows before the album comes
    first = asyncio.create_task(rig.feed(rig.text("before"), expected=1))
    await asyncio.sleep(WINDOW * 1.5)
    calls = await rig.feed(
        rig.photo("g2", "album"),
        rig.photo("g2"),
        rig.text("/help"),
        rig.photo("g2"),
        expected=2,
    )
    await first
    assert calls == [("before", [1]), ("album", [2, 3, 5]), ("/help", [4])]


async def test_texts_sent_just_before_and_after_an_album_are_its_question(rig: Rig) -> None:
    """As Telegram Desktop sends several files with a comment: the comment first, as a text of its own."""
    calls = await rig.feed(
        rig.text("Сравни эти договоры"),
        rig.photo("g5", "первый"),
        rig.photo("g5"),
        rig.text("и скажи, какой лучше"),
        rig.photo("g5"),
        rig.text("это уже отдельно"),
        expected=2,
    )
    await asyncio.sleep(WINDOW * 2)
    assert calls == [
        ("Сравни эти договоры\n\nпервый\n\nи скажи, какой лучше", [2, 3, 5]),
        ("это уже отдельно", [6]),
    ]
    assert len(rig.gatherer) == 0


async def test_photos_and_files_sent_one_by_one_with_a_comment_are_one_request(rig: Rig) -> None:
    calls = await rig.feed(
        rig.text("Что общего?"),
        rig.photo(None),
        rig.update(document={"file_id": "d", "file_unique_id": "d", "file_name": "a.txt"}),
        rig.photo(None, "третье"),
        expected=1,
    )
    await asyncio.sleep(WINDOW * 2)
    assert calls == [("Что общего?\n\nтретье", [2, 3, 4])]
    assert len(rig.gatherer) == 0


async def test_an_album_with_its_comment_is_counted_once_by_the_flood_guard(rig: Rig) -> None:
    rig.flood.guard.limit = 1  # the comment is the last message let through this minute
    calls = await rig.feed(rig.text("Что на фото?"), rig.photo("g6"), rig.photo("g6"), expected=1)
    assert calls == [("Что на фото?", [2, 3])]


async def test_a_photo_alone_goes_on_as_it_was_sent(rig: Rig) -> None:
    calls = await rig.feed(rig.photo(None, "подпись"), expected=1)
    assert calls == [("подпись", [1])]


async def test_short_texts_and_commands_are_not_joined(rig: Rig) -> None:
    calls = await rig.feed(rig.text("one"), rig.text("two"), rig.text(long_piece(1)), rig.text("/help"), expected=4)
    assert [text for text, _ in calls] == ["one", "two", long_piece(1), "/help"]


async def test_a_split_text_that_starts_with_a_path_is_one_message(rig: Rig) -> None:
    """Only what Telegram marks as a command is answered on its own; "/etc/hosts" is not one."""
    pieces = ["/etc/hosts " + long_piece(1), "/var/log " + long_piece(2), "the end"]
    calls = await rig.feed(*(rig.text(p) for p in pieces), expected=1)
    assert calls == [(" ".join(pieces), [1])]


async def test_a_message_in_between_ends_a_split_text(rig: Rig) -> None:
    calls = await rig.feed(rig.text(long_piece(1)), rig.photo(None, "photo"), rig.text("/help"), expected=3)
    assert [text for text, _ in calls] == [long_piece(1), "photo", "/help"]


async def test_chats_are_gathered_separately(rig: Rig) -> None:
    calls = await rig.feed(rig.text(long_piece(1)), rig.text("other chat", chat_id=CHAT + 1), expected=2)
    assert sorted(text for text, _ in calls) == sorted([long_piece(1), "other chat"])


async def test_a_part_after_its_album_went_on_is_a_request_of_its_own(rig: Rig) -> None:
    await rig.feed(rig.photo("g3", "first"), rig.photo("g3"), expected=1)
    calls = await rig.feed(rig.photo("g3", "late"), expected=1)
    assert calls == [("first", [1, 2]), ("late", [3])]


def from_user(first_name: str, user_id: int = 900) -> dict[str, Any]:
    return {"type": "user", "date": 0, "sender_user": {"id": user_id, "is_bot": False, "first_name": first_name}}


async def test_messages_forwarded_together_are_one_request_each_headed_with_its_sender(rig: Rig) -> None:
    anna, boris = from_user("Анна", 901), from_user("Борис", 902)
    calls = await rig.feed(
        rig.forward("Встречаемся в 10?", anna),
        rig.forward("Давай в 11", boris),
        rig.forward("Ок", anna),
        expected=1,
    )
    await asyncio.sleep(WINDOW * 2)
    assert calls == [("Анна:\nВстречаемся в 10?\n\nБорис:\nДавай в 11\n\nАнна:\nОк", [1])]
    assert len(rig.gatherer) == 0


async def test_forwards_from_one_sender_are_joined_without_headings(rig: Rig) -> None:
    channel = {
        "type": "channel",
        "date": 0,
        "chat": {"id": -100, "type": "channel", "title": "Новости"},
        "message_id": 5,
    }
    calls = await rig.feed(rig.forward("Первая новость", channel), rig.forward("Вторая", channel), expected=1)
    assert calls == [("Первая новость\n\nВторая", [1])]


async def test_a_text_typed_before_a_forward_is_its_comment_and_one_after_it_a_request_of_its_own(rig: Rig) -> None:
    anna = from_user("Анна")
    calls = await rig.feed(
        rig.text("комментарий"),
        rig.forward("пересланное", anna),
        rig.text("вопрос"),
        rig.forward(long_piece(1), anna),
        rig.text("не продолжение"),
        expected=3,
    )
    await asyncio.sleep(WINDOW * 2)
    # A typed message ends a forward and may be the next one's comment; a forwarded long text is not the start of a
    # split one. The texts' own answers were withdrawn before they showed anything.
    assert calls == [
        ("комментарий\n\nпересланное", [1]),
        ("вопрос\n\n" + long_piece(1), [3]),
        ("не продолжение", [5]),
    ]
    assert len(rig.gatherer) == 0


async def test_a_comment_whose_answer_shows_already_keeps_it_and_the_forward_goes_alone(rig: Rig) -> None:
    rig.seen.shows_at_once = True
    rig.seen.answer_time = WINDOW
    first = asyncio.create_task(rig.feed(rig.text("комментарий"), expected=1))
    await asyncio.sleep(WINDOW / 3)  # its answer shows
    calls = await rig.feed(rig.forward("пересланное", from_user("Анна")), expected=2)
    await first
    assert calls == [("комментарий", [1]), ("пересланное", [2])]


async def test_a_text_sent_longer_ago_than_the_window_is_not_a_forwards_comment(rig: Rig) -> None:
    rig.seen.answer_time = WINDOW * 3
    first = asyncio.create_task(rig.feed(rig.text("вопрос"), expected=1))
    await asyncio.sleep(WINDOW * 1.5)  # its answer still shows nothing
    calls = await rig.feed(rig.forward("пересланное", from_user("Анна")), expected=2)
    await first
    assert calls == [("вопрос", [1]), ("пересланное", [2])]


async def test_a_forward_with_its_comment_is_counted_once_by_the_flood_guard(rig: Rig) -> None:
    rig.flood.guard.limit = 1  # the comment is the last message let through this minute
    calls = await rig.feed(rig.text("комментарий"), rig.forward("пересланное", from_user("Анна")), expected=1)
    assert calls == [("комментарий\n\nпересланное", [1])]


async def test_a_text_the_flood_guard_refused_is_not_taken_past_it_by_a_forward(rig: Rig) -> None:
    rig.flood.guard.limit = 1
    anna = from_user("Анна")
    calls = await rig.feed(rig.text("первое"), rig.text("комментарий"), rig.forward("пересланное", anna), expected=1)
    await asyncio.sleep(WINDOW * 2)
    # The refused text is not answered with the forward (the forward is refused as well: the limit is reached).
    assert calls == [("первое", [1])]


async def test_a_forms_input_a_forward_took_while_it_queued_is_taken_back_for_the_form(rig: Rig) -> None:
    rig.seen.answer_time = WINDOW  # the first answer keeps the chat busy: the next two queue behind it
    anna = from_user("Анна")
    calls = await rig.feed(
        rig.text("вопрос"), rig.text("роль: переводчик"), rig.forward("пересланное", anna), expected=3
    )
    await asyncio.sleep(WINDOW * 2)
    assert calls == [("вопрос", [1]), ("form: роль: переводчик", [2]), ("пересланное", [3])]
    assert len(rig.gatherer) == 0


async def test_a_command_before_a_forward_is_not_its_comment(rig: Rig) -> None:
    calls = await rig.feed(rig.text("/help"), rig.forward("пересланное", from_user("Анна")), expected=2)
    assert calls == [("/help", [1]), ("пересланное", [2])]


async def test_a_comment_heads_the_caption_of_forwarded_photos(rig: Rig) -> None:
    anna = from_user("Анна")
    calls = await rig.feed(
        rig.text("Что на фото?"),
        rig.forwarded_photo(anna, "Пункт 3", group="g9"),
        rig.forwarded_photo(anna, group="g9"),
        expected=1,
    )
    await asyncio.sleep(WINDOW * 2)
    assert calls == [("Что на фото?\n\nПункт 3", [2, 3])]
    assert len(rig.gatherer) == 0


async def test_forwarded_texts_photos_and_files_are_one_album_whose_caption_holds_the_texts(rig: Rig) -> None:
    anna, boris = from_user("Анна", 901), from_user("Борис", 902)
    calls = await rig.feed(
        rig.forward("Смотри, что я нашла:", anna),
        rig.forwarded_photo(anna, "Вот этот диван"),
        rig.forwarded_document(anna),
        rig.forward("Брать?", boris),
        expected=1,
    )
    await asyncio.sleep(WINDOW * 2)
    assert calls == [("Анна:\nСмотри, что я нашла:\n\nАнна:\nВот этот диван\n\nБорис:\nБрать?", [2, 3])]
    assert len(rig.gatherer) == 0


async def test_a_forwarded_album_joins_the_texts_forwarded_with_it(rig: Rig) -> None:
    anna = from_user("Анна")
    calls = await rig.feed(
        rig.forwarded_photo(anna, "Три варианта", group="fwd-1"),
        rig.forwarded_photo(anna, group="fwd-1"),
        rig.forwarded_photo(anna, group="fwd-1"),
        rig.forward("Какой лучше?", anna),
        expected=1,
    )
    await asyncio.sleep(WINDOW * 2)
    assert calls == [("Три варианта\n\nКакой лучше?", [1, 2, 3])]


async def test_forwarded_photos_without_text_have_no_caption(rig: Rig) -> None:
    anna = from_user("Анна")
    calls = await rig.feed(rig.forwarded_photo(anna), rig.forwarded_photo(anna), expected=1)
    assert calls == [("", [1, 2])]


async def test_a_typed_message_ends_a_forward_of_photos(rig: Rig) -> None:
    anna = from_user("Анна")
    calls = await rig.feed(
        rig.forward("пересланное", anna), rig.text("вопрос"), rig.forwarded_photo(anna, "фото"), expected=2
    )
    # The typed text is the comment of the forward after it.
    assert calls == [("пересланное", [1]), ("вопрос\n\nфото", [3])]


async def test_stickers_and_voice_messages_among_forwards_join_them_and_come_last(rig: Rig) -> None:
    anna = from_user("Анна")
    calls = await rig.feed(
        rig.forward("Привет, посмотри договор", anna),
        rig.forwarded_sticker(anna),
        rig.forwarded_photo(anna, "Пункт 3"),
        rig.forwarded_voice(anna),
        rig.forward("И пункт 5", anna),
        expected=1,
    )
    await asyncio.sleep(WINDOW * 2)
    # One album for the files handler: the photo first, then what it leaves out with one notice.
    assert calls == [("Привет, посмотри договор\n\nПункт 3\n\nИ пункт 5", [3, 2, 4])]
    assert len(rig.gatherer) == 0


async def test_a_forward_of_only_stickers_goes_on_as_its_first_message(rig: Rig) -> None:
    anna = from_user("Анна")
    calls = await rig.feed(
        rig.forwarded_sticker(anna), rig.forwarded_voice(anna), rig.forwarded_sticker(anna), expected=1
    )
    await asyncio.sleep(WINDOW * 2)
    assert calls == [("", [1])]


async def test_a_typed_message_ends_a_forward_of_stickers(rig: Rig) -> None:
    anna = from_user("Анна")
    calls = await rig.feed(
        rig.forwarded_sticker(anna),
        rig.text("вопрос"),
        rig.forwarded_sticker(anna),
        rig.forwarded_voice(anna),
        expected=2,
    )
    # The typed text is the comment of the stickers after it: it is what is answered (and they are told of).
    assert calls == [("", [1]), ("вопрос", [2])]


def test_the_sender_of_a_forward_is_named_as_telegram_shows_it() -> None:
    def forwarded(origin: dict[str, Any]) -> Message:
        data = {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}, "text": "x", "forward_origin": origin}
        return Message.model_validate(data)

    user = from_user("Анна")
    user["sender_user"]["last_name"] = "Петрова"
    assert origin_name(forwarded(user)) == "Анна Петрова"
    assert origin_name(forwarded({"type": "hidden_user", "date": 0, "sender_user_name": "Скрытый"})) == "Скрытый"
    group = {"type": "chat", "date": 0, "sender_chat": {"id": -1, "type": "supergroup", "title": "Клуб"}}
    assert origin_name(forwarded(group)) == "Клуб"
    channel = {
        "type": "channel",
        "date": 0,
        "chat": {"id": -2, "type": "channel", "title": "Канал"},
        "message_id": 3,
        "author_signature": "Редактор",
    }
    assert origin_name(forwarded(channel)) == "Канал (Редактор)"


def test_join_text_puts_back_a_space_trimmed_at_a_cut() -> None:
    def message(text: str) -> Message:
        return Message.model_validate({"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}, "text": text})

    assert join_text([message("abc "), message("def")]) == "abc def"
    assert join_text([message("abc\n"), message("def")]) == "abc\ndef"
    assert join_text([message("abc"), message("def")]) == "abc def"


# --- end to end: the bot process against the fakes ---------------------------------------------------------------


async def used_today(h: BotHarness, chat: int) -> int:
    async with h.services() as services:
        return sum((await services.quota.used_today(chat)).values())


async def answer_done(h: BotHarness, chat: int, requests: int) -> None:
    await h.llm.wait_for_requests(requests, timeout=15)
    await h.tg.wait_for_message(chat, timeout=15)
    await h.settle()


async def answered_once(h: BotHarness, chat: int, before: int, *, messages: int = 1) -> None:
    """What was sent was answered as one request: the model asked once (``before`` requests before it), ``messages``
    sent to the chat (notices and the answer), and nothing more came within a second."""
    await answer_done(h, chat, before + 1)
    await h.tg.wait_until(lambda: len(h.tg.sent_messages(chat)) >= messages, 15, "the notices and the answer")
    await h.settle(quiet=1.0)
    assert h.llm.request_count == before + 1


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_an_album_of_three_photos_is_one_request(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    before = h.llm.request_count
    images = [JPEG, make_png(), JPEG]
    for index, data in enumerate(images):
        h.tg.user_photo(chat, data, caption="Сравни эти фото" if index == 0 else None, media_group_id="album-1")
    await answer_done(h, chat, before + 1)
    assert h.llm.request_count == before + 1
    request = h.llm.requests[-1]
    assert len(request.image_urls) == 3
    assert request.image_urls[1].startswith("data:image/png;base64,")
    assert request.last_user_text == "Сравни эти фото"
    answers = h.tg.sent_messages(chat)
    assert len(answers) == 1
    assert "[images: 3]" in (answers[0].text or "")
    assert await used_today(h, chat) == 1


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_a_long_text_split_by_the_client_is_one_request(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    before = h.llm.request_count
    text = " ".join(f"Предложение номер {i} из длинного вставленного текста." for i in range(200))
    assert len(text) > 2 * 4096
    update_ids = h.tg.user_long_message(chat, text)
    assert len(update_ids) == 3
    await answer_done(h, chat, before + 1)
    assert h.llm.request_count == before + 1
    assert h.llm.requests[-1].last_user_text == text
    assert await used_today(h, chat) == 1


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_several_forwarded_messages_are_one_request(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    before = h.llm.request_count
    for name, text in [("Анна", "Кто заберёт посылку?"), ("Борис", "Я, после работы"), ("Анна", "Спасибо!")]:
        origin = {"type": "hidden_user", "date": 1_700_000_000, "sender_user_name": name}
        h.tg.user_message(chat, text, extra={"forward_origin": origin})
    await answer_done(h, chat, before + 1)
    assert h.llm.request_count == before + 1
    assert (
        h.llm.requests[-1].last_user_text == "Анна:\nКто заберёт посылку?\n\nБорис:\nЯ, после работы\n\nАнна:\nСпасибо!"
    )
    assert await used_today(h, chat) == 1


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_messages_around_an_album_are_answered_in_arrival_order(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    before = h.llm.request_count
    await h.ask(chat, "первый вопрос")
    h.tg.user_photo(chat, JPEG, caption="альбом", media_group_id="album-2")
    h.tg.user_message(chat, "/help")
    h.tg.user_photo(chat, JPEG, media_group_id="album-2")
    h.tg.user_message(chat, "последний вопрос")
    await h.llm.wait_for_requests(before + 2, timeout=20)
    await h.tg.wait_until(lambda: len(h.tg.sent_messages(chat)) >= 3, 20, "two answers and the help")
    await h.settle(quiet=1.0)
    requests = h.llm.requests[before:]
    # The text sent right after the album is its question too (as a caption sent on its own).
    assert [r.last_user_text for r in requests] == ["первый вопрос", "альбом\n\nпоследний вопрос"]
    assert [len(r.image_urls) for r in requests] == [0, 2]
    assert await used_today(h, chat) == 2


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_a_comment_sent_before_several_files_is_their_question_in_one_request(harness: BotHarness) -> None:
    """As Telegram Desktop sends two files with a comment: the comment as a text of its own, then the files, grouped
    or one by one."""
    h = harness
    for group in ("desktop-album", None):
        chat = h.new_chat()
        before = h.llm.request_count
        h.tg.user_message(chat, "Сравни эти два договора")
        h.tg.user_document(chat, "Срок аренды 11 месяцев".encode(), "первый.txt", "text/plain", media_group_id=group)
        h.tg.user_document(chat, "Срок аренды 3 года".encode(), "второй.txt", "text/plain", media_group_id=group)
        await answered_once(h, chat, before)
        text = h.llm.requests[-1].last_user_text
        assert 'name="первый.txt"' in text and 'name="второй.txt"' in text
        assert text.endswith("Сравни эти два договора")
        assert len(h.tg.sent_messages(chat)) == 1
        assert await used_today(h, chat) == 1


def forwarded_photo(h: BotHarness, chat: int, data: bytes, origin: dict[str, Any], caption: str | None = None) -> int:
    """A user forwards a photo (the fake sends user photos with no other fields)."""
    stored = h.tg._store_file(data, "photos", ".jpg")
    return h.tg._user_message(
        chat,
        user_id=None,
        first_name="Test",
        chat_type="private",
        text=caption,
        kind="photo",
        media={"photo": h.tg._photo_sizes(stored), "forward_origin": origin},
    )


def hidden_user(name: str) -> dict[str, Any]:
    return {"type": "hidden_user", "date": 1_700_000_000, "sender_user_name": name}


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_texts_and_a_photo_forwarded_together_are_one_request(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    before = h.llm.request_count
    anna = hidden_user("Анна")
    h.tg.user_message(chat, "Смотри, что я нашла:", extra={"forward_origin": anna})
    forwarded_photo(h, chat, make_png(), anna, caption="Вот этот диван")
    h.tg.user_message(chat, "Брать?", extra={"forward_origin": anna})
    await answered_once(h, chat, before)
    request = h.llm.requests[-1]
    assert len(request.image_urls) == 1
    assert request.last_user_text == "Смотри, что я нашла:\n\nВот этот диван\n\nБрать?"
    assert len(h.tg.sent_messages(chat)) == 1
    assert await used_today(h, chat) == 1


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_a_file_forwarded_with_texts_is_read_with_them(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    before = h.llm.request_count
    h.tg.user_message(chat, "Вот отчёт", extra={"forward_origin": hidden_user("Анна")})
    stored = h.tg._store_file("Выручка выросла на 12%".encode(), "documents", ".txt")
    document = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_name": "отчёт.txt"}
    h.tg._user_message(
        chat,
        user_id=None,
        first_name="Test",
        chat_type="private",
        kind="document",
        media={"document": {**document, "mime_type": "text/plain"}, "forward_origin": hidden_user("Анна")},
    )
    h.tg.user_message(chat, "Что скажешь?", extra={"forward_origin": hidden_user("Борис")})
    await answered_once(h, chat, before)
    text = h.llm.requests[-1].last_user_text
    assert 'name="отчёт.txt"' in text and "Выручка выросла на 12%" in text
    assert text.endswith("Анна:\nВот отчёт\n\nБорис:\nЧто скажешь?")
    assert await used_today(h, chat) == 1


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_texts_forwarded_with_an_album_of_videos_are_answered_without_the_videos(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    before = h.llm.request_count
    anna = hidden_user("Анна")
    h.tg.user_message(chat, "Смотри, как мы съездили", extra={"forward_origin": anna})
    for index in range(2):
        h.tg.user_video(chat, f"v{index}", media_group_id="fwd-videos", forward_origin=anna)
    h.tg.user_message(chat, "Куда поедем в следующий раз?", extra={"forward_origin": anna})
    await answered_once(h, chat, before)
    assert h.llm.requests[-1].last_user_text == "Смотри, как мы съездили\n\nКуда поедем в следующий раз?"
    notice = h.tg.sent_messages(chat)[0].text or ""
    assert notice.startswith("🎬 Видео из присланного я пропустил")
    assert await used_today(h, chat) == 1


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_a_forward_of_more_files_than_a_request_takes_is_refused_before_downloading(
    harness: BotHarness,
) -> None:
    h = harness
    chat = h.new_chat()
    before, downloads = h.llm.request_count, len(h.tg.calls_of("getFile"))
    anna = hidden_user("Анна")
    for index in range(MAX_ATTACHMENTS + 1):
        forwarded_photo(h, chat, JPEG, anna, caption=f"фото {index}")
    reply = await h.tg.wait_for_message(chat, timeout=15)
    await h.settle(quiet=1.0)
    assert reply.text == (
        f"📎 За один раз я читаю не больше {MAX_ATTACHMENTS} фото и файлов, а здесь их {MAX_ATTACHMENTS + 1}. "
        "Пришлите их частями."
    )
    assert len(h.tg.sent_messages(chat)) == 1
    assert h.llm.request_count == before
    assert len(h.tg.calls_of("getFile")) == downloads
    assert await used_today(h, chat) == 0


def forwarded_sticker(h: BotHarness, chat: int, origin: dict[str, Any]) -> int:
    return h.tg.user_content(chat, {"sticker": STICKER, "forward_origin": origin})


def forwarded_voice(h: BotHarness, chat: int, origin: dict[str, Any]) -> int:
    voice = {"file_id": "voice", "file_unique_id": "voice", "duration": 3, "mime_type": "audio/ogg"}
    return h.tg.user_content(chat, {"voice": voice, "forward_origin": origin})


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_stickers_voice_messages_and_a_video_among_forwarded_texts_are_left_out_with_one_notice(
    harness: BotHarness,
) -> None:
    h = harness
    chat = h.new_chat()
    before = h.llm.request_count
    anna = hidden_user("Анна")
    h.tg.user_message(chat, "Привет, посмотри договор", extra={"forward_origin": anna})
    forwarded_sticker(h, chat, anna)
    h.tg.user_message(chat, "Что скажешь по пункту 3?", extra={"forward_origin": anna})
    forwarded_voice(h, chat, anna)
    h.tg.user_video(chat, "single-video", forward_origin=anna)
    forwarded_sticker(h, chat, anna)
    h.tg.user_message(chat, "И по пункту 5", extra={"forward_origin": anna})
    await answered_once(h, chat, before, messages=2)
    assert h.llm.requests[-1].last_user_text == "Привет, посмотри договор\n\nЧто скажешь по пункту 3?\n\nИ по пункту 5"
    sent = h.tg.sent_texts(chat)
    assert len(sent) == 2
    assert sent[0] == files_texts.skipped_parts(["other", "audio", "video"])
    assert sent[0].startswith("🧩 Стикеры") and sent[0].count("пропустил") == 3
    assert await used_today(h, chat) == 1


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_a_forward_with_a_sticker_and_no_requests_left_gets_the_refusal_alone(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.use_up_quota(chat)
    before = h.llm.request_count
    anna = hidden_user("Анна")
    h.tg.user_message(chat, "Привет, посмотри договор", extra={"forward_origin": anna})
    forwarded_sticker(h, chat, anna)
    h.tg.user_message(chat, "Что скажешь?", extra={"forward_origin": anna})
    refusal = await h.tg.wait_for_message(chat, timeout=15)
    await h.settle(quiet=1.0)
    assert (refusal.text or "").startswith("⏳ Дневной лимит")
    assert len(h.tg.sent_messages(chat)) == 1
    assert h.llm.request_count == before


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_a_long_mixed_forward_is_one_request_whatever_the_flood_limit(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    before = h.llm.request_count
    anna = hidden_user("Анна")
    count = 15  # 30 messages: over the 20 a minute the flood guard lets through
    for index in range(count):
        h.tg.user_message(chat, f"сообщение {index}", extra={"forward_origin": anna})
        forwarded_sticker(h, chat, anna)
    await answered_once(h, chat, before, messages=2)
    assert h.llm.requests[-1].last_user_text == "\n\n".join(f"сообщение {index}" for index in range(count))
    assert h.tg.sent_texts(chat)[0] == files_texts.skipped_parts(["other"])
    assert len(h.tg.sent_messages(chat)) == 2  # no flood notice
    assert await used_today(h, chat) == 1


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_a_sticker_forwarded_with_texts_and_a_photo_is_told_with_the_photo_answered(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    before = h.llm.request_count
    anna = hidden_user("Анна")
    h.tg.user_message(chat, "Смотри, что я нашла:", extra={"forward_origin": anna})
    forwarded_sticker(h, chat, anna)
    forwarded_photo(h, chat, make_png(), anna, caption="Вот этот диван")
    h.tg.user_message(chat, "Брать?", extra={"forward_origin": anna})
    await answered_once(h, chat, before, messages=2)
    request = h.llm.requests[-1]
    assert len(request.image_urls) == 1
    assert request.last_user_text == "Смотри, что я нашла:\n\nВот этот диван\n\nБрать?"
    sent = h.tg.sent_texts(chat)
    assert len(sent) == 2 and sent[0] == files_texts.skipped_parts(["other"])
    assert await used_today(h, chat) == 1


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_a_forward_of_only_stickers_and_voice_messages_gets_one_reply(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    before = h.llm.request_count
    anna = hidden_user("Анна")
    forwarded_sticker(h, chat, anna)
    forwarded_voice(h, chat, anna)
    forwarded_sticker(h, chat, anna)
    reply = await h.tg.wait_for_message(chat, timeout=15)
    await h.settle(quiet=1.0)
    assert reply.text == texts.NOT_TEXT
    assert len(h.tg.sent_messages(chat)) == 1
    assert h.llm.request_count == before
    assert await used_today(h, chat) == 0


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_a_comment_and_the_forward_after_it_are_one_request_and_one_answer(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    before = h.llm.request_count
    # As a Telegram client sends a forward with a comment: the comment first, then the forwarded message.
    h.tg.user_message(chat, "Переведи на английский")
    h.tg.user_message(chat, "Привет, как дела?", extra={"forward_origin": hidden_user("Анна")})
    await answered_once(h, chat, before)
    assert [r.last_user_text for r in h.llm.requests[before:]] == ["Переведи на английский\n\nПривет, как дела?"]
    assert len(h.tg.sent_messages(chat)) == 1
    assert await used_today(h, chat) == 1


# A forward that comes after the comment's own answer began must still come within the gather window: the bot's work
# before that answer shows (the model request among it) takes a good part of the 0.8 s on a loaded machine.
LATE_FORWARD_WINDOW = "3"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def wide_window(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    """A bot that waits ``LATE_FORWARD_WINDOW`` seconds for a forward after a text."""
    workdir = tmp_path_factory.mktemp("wide_window")
    async with BotHarness.open(workdir, env={"POMOGATOR_GATHER_WINDOW_SECONDS": LATE_FORWARD_WINDOW}) as h:
        yield h


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_a_comment_whose_model_request_began_is_withdrawn_from_it_without_a_trace(
    wide_window: BotHarness,
) -> None:
    h = wide_window
    chat = h.new_chat()
    before = h.llm.request_count
    h.llm.enqueue(Reply(text="Что именно перевести?", ttft=3.0))
    h.tg.user_message(chat, "Переведи")
    await h.llm.wait_for_requests(before + 1, timeout=15)
    h.tg.user_message(chat, "Hello, world", extra={"forward_origin": hidden_user("Анна")})
    await h.llm.wait_for_requests(before + 2, timeout=15)
    await h.tg.wait_for_message(chat, timeout=15)
    await h.settle(quiet=1.0)
    first, second = h.llm.requests[before:]
    assert first.last_user_text == "Переведи" and first.status == 499  # the bot went away before its answer
    assert second.last_user_text == "Переведи\n\nHello, world"
    assert all("Что именно" not in text for text in h.tg.sent_texts(chat))
    assert len(h.tg.sent_messages(chat)) == 1
    assert await used_today(h, chat) == 1
    async with h.services() as services:
        stored = await services.chat.dialog_for(await services.users.get(chat)).conversation.history()
    assert [turn.decoded() for turn in stored if turn.role == "user"] == ["Переведи\n\nHello, world"]


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_a_comment_whose_answer_shows_keeps_it_and_the_forward_is_answered_after_it(
    wide_window: BotHarness,
) -> None:
    h = wide_window
    chat = h.new_chat()
    before = h.llm.request_count
    h.llm.enqueue(Reply.slow(30, 2.0))
    h.tg.user_message(chat, "Расскажи сказку")
    await h.tg.wait_until(lambda: h.tg.drafts(chat).count > 0, 15, "the first draft")
    h.tg.user_message(chat, "Hello, world", extra={"forward_origin": hidden_user("Анна")})
    await h.llm.wait_for_requests(before + 2, timeout=15)
    await h.settle(quiet=1.0)
    first, second = h.llm.requests[before:]
    assert first.last_user_text == "Расскажи сказку" and first.status == 200
    assert second.last_user_text == "Hello, world"
    assert (h.tg.sent_texts(chat)[0]).endswith("tok29")
    assert await used_today(h, chat) == 2


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_a_role_typed_just_before_a_forward_stays_the_role(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.reply_settled(chat, "/role")
    before = h.llm.request_count
    h.tg.user_message(chat, "Ты переводчик")
    h.tg.user_message(chat, "Hello, world", extra={"forward_origin": hidden_user("Анна")})
    await h.llm.wait_for_requests(before + 1, timeout=15)
    await h.settle(quiet=1.0)
    assert [r.last_user_text for r in h.llm.requests[before:]] == ["Hello, world"]
    async with h.services() as services:
        assert (await services.users.get(chat)).role == "Ты переводчик"


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_a_comment_and_its_forward_with_no_requests_left_get_one_refusal(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.use_up_quota(chat)
    before = h.llm.request_count
    h.tg.user_message(chat, "Переведи")
    h.tg.user_message(chat, "Hello, world", extra={"forward_origin": hidden_user("Анна")})
    refusal = await h.tg.wait_for_message(chat, timeout=15)
    await h.settle(quiet=1.0)
    assert (refusal.text or "").startswith("⏳ Дневной лимит")
    assert len(h.tg.sent_messages(chat)) == 1
    assert h.llm.request_count == before
