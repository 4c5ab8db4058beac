"""Replies and quotes reach the model; every other kind of message gets a hint; edits are answered with a note."""

from __future__ import annotations

import ast
import inspect
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ContentType
from aiogram.types import Message, TelegramObject, Update

from pomogator.bot import texts
from pomogator.bot.filters import SERVICE_CONTENT_TYPES
from pomogator.bot.handlers.fallback import CONTENT_TYPES, EditNotices
from pomogator.bot.middlewares import PrivateChatsOnly
from pomogator.bot.middlewares.private_only import Claimed
from pomogator.bot.replies import replied_text
from pomogator.services.formatting import utf16_len
from tests.bot.harness import BotHarness
from tests.cli.helpers import clean_env, run_cli
from tests.fakes.openai_server import Reply
from tests.fakes.telegram_server import FakeTelegram, JsonDict, SentMessage


def e2e(test: Callable[..., Any]) -> Callable[..., Any]:
    """A test against the module's running bot."""
    marked: Callable[..., Any] = pytest.mark.slow(pytest.mark.asyncio(loop_scope="module")(test))
    return marked


CHANNEL: JsonDict = {"id": -1_001_234_567_890, "type": "channel", "title": "Канал"}
WINNER: JsonDict = {"id": 77, "is_bot": False, "first_name": "Победитель"}
PHOTO: list[JsonDict] = [{"file_id": "game-photo", "file_unique_id": "game-photo-u", "width": 90, "height": 60}]

# Kinds a user can send or forward that no handler reads and that the old list of NOT_TEXT kinds missed.
UNREAD_KINDS: dict[str, JsonDict] = {
    "story": {"story": {"chat": CHANNEL, "id": 7}},
    "checklist": {"checklist": {"title": "Дела", "tasks": [{"id": 1, "text": "Купить хлеб"}]}},
    "paid_media": {"paid_media": {"star_count": 5, "paid_media": [{"type": "preview", "width": 640, "height": 480}]}},
    "game": {"game": {"title": "Игра", "description": "Описание", "photo": PHOTO}},
    "giveaway": {"giveaway": {"chats": [CHANNEL], "winners_selection_date": 1_900_000_000, "winner_count": 3}},
    "giveaway_winners": {
        "giveaway_winners": {
            "chat": CHANNEL,
            "giveaway_message_id": 9,
            "winners_selection_date": 1_900_000_000,
            "winner_count": 1,
            "winners": [WINNER],
        }
    },
    "invoice": {
        "invoice": {
            "title": "Счёт",
            "description": "Оплата",
            "start_parameter": "pay",
            "currency": "RUB",
            "total_amount": 10_000,
        }
    },
}

# Service messages a private chat with the bot can have: nobody wrote anything to the bot.
PRIVATE_SERVICE: dict[str, JsonDict] = {
    "message_auto_delete_timer_changed": {"message_auto_delete_timer_changed": {"message_auto_delete_time": 86_400}},
    "chat_background_set": {
        "chat_background_set": {
            "type": {"type": "fill", "fill": {"type": "solid", "color": 0}, "dark_theme_dimming": 0}
        }
    },
    "write_access_allowed": {"write_access_allowed": {"from_request": True}},
    "forum_topic_created": {"forum_topic_created": {"name": "Тема", "icon_color": 7_322_096}},
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def harness(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    workdir: Path = tmp_path_factory.mktemp("replies")
    async with BotHarness.open(workdir) as h:
        yield h


def message(**fields: Any) -> Message:
    return Message.model_validate({"message_id": 2, "date": 0, "chat": {"id": 1, "type": "private"}, **fields})


async def answered(h: BotHarness, chat: int, text: str, answer: str) -> SentMessage:
    """The user asks ``text``, the model answers ``answer``; returns the bot's final message."""
    h.llm.enqueue(Reply(text=answer))
    h.tg.user_message(chat, text)
    sent = await h.tg.wait_for_message(chat, lambda m: m.text == answer, timeout=15)
    await h.settle()
    return sent


async def sent_after(h: BotHarness, chat: int, after: int) -> list[SentMessage]:
    """What the bot sent in ``chat`` after message ``after``, once it went quiet."""
    await h.settle()
    return h.messages_after(chat, after)


# --- replies and quotes -------------------------------------------------------------------------------------------


def test_the_quoted_part_wins_over_the_whole_replied_message() -> None:
    replied = {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}, "text": "Один. Два. Три."}
    quoted = message(text="?", reply_to_message=replied, quote={"text": "Два.", "position": 6})
    assert replied_text(quoted) == "Два."
    assert replied_text(message(text="?", reply_to_message=replied)) == "Один. Два. Три."


def test_a_replied_photo_gives_its_caption_and_a_sticker_nothing() -> None:
    chat = {"id": 1, "type": "private"}
    photo = {"message_id": 1, "date": 0, "chat": chat, "photo": PHOTO, "caption": "Закат"}
    sticker = {
        "message_id": 1,
        "date": 0,
        "chat": chat,
        "sticker": {
            "file_id": "s",
            "file_unique_id": "su",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
        },
    }
    assert replied_text(message(text="?", reply_to_message=photo)) == "Закат"
    assert replied_text(message(text="?", reply_to_message=sticker)) is None
    assert replied_text(message(text="?")) is None


def test_a_reply_to_another_chat_is_seen_through_its_quote() -> None:
    external = {"origin": {"type": "channel", "chat": CHANNEL, "message_id": 3, "date": 0}, "chat": CHANNEL}
    assert replied_text(message(text="?", external_reply=external, quote={"text": "Цитата", "position": 0})) == (
        "Цитата"
    )
    assert replied_text(message(text="?", external_reply=external)) is None


@e2e
async def test_a_reply_to_an_answer_sends_that_answer_before_the_question(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    answer = await answered(h, chat, "Столица Франции?", "Париж — столица Франции.\nНа Сене.")
    h.tg.user_message(chat, "Переведи это на английский", reply_to_message_id=answer.message_id)
    await h.tg.wait_for_message(chat, lambda m: (m.text or "").startswith("Echo:"), timeout=15)
    assert h.llm.requests[-1].last_user_text == ("> Париж — столица Франции.\n> На Сене.\n\nПереведи это на английский")


@e2e
async def test_a_quote_sends_only_the_quoted_part(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    answer = await answered(h, chat, "Три города?", "Париж, Рим, Берлин.")
    h.tg.user_message(chat, "Расскажи про этот", reply_to_message_id=answer.message_id, quote="Рим")
    await h.tg.wait_for_message(chat, lambda m: (m.text or "").startswith("Echo:"), timeout=15)
    assert h.llm.requests[-1].last_user_text == "> Рим\n\nРасскажи про этот"


@e2e
async def test_a_reply_to_a_forwarded_message_sends_its_text(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    forwarded = {"forward_origin": {"type": "hidden_user", "sender_user_name": "Коллега", "date": 1_700_000_000}}
    h.tg.user_message(chat, "Встреча перенесена на пятницу", extra=forwarded)
    await h.tg.wait_for_message(chat, timeout=15)
    await h.settle()
    forwarded_id = h.tg.last_user_message_id(chat)
    h.tg.user_message(chat, "Что ответить?", reply_to_message_id=forwarded_id)
    await h.tg.wait_for_message(chat, timeout=15)
    assert h.llm.requests[-1].last_user_text == "> Встреча перенесена на пятницу\n\nЧто ответить?"


@e2e
async def test_a_long_reply_split_by_the_client_is_still_one_request_with_the_quote(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    answer = await answered(h, chat, "Тема?", "Погода.")
    requests = h.llm.request_count
    first, second = "слово " * 700, "конец вопроса"
    assert utf16_len(first.strip()) >= 3000
    h.tg.user_message(chat, first.strip(), reply_to_message_id=answer.message_id)
    h.tg.user_message(chat, second)
    await h.tg.wait_for_message(chat, timeout=15)
    await h.settle()
    assert h.llm.request_count == requests + 1
    assert h.llm.requests[-1].last_user_text == f"> Погода.\n\n{first.strip()} {second}"


# --- kinds of messages nobody reads ------------------------------------------------------------------------------


def _aiogram_field_docs() -> dict[str, str]:
    """The docstring aiogram gives each field of Message (its Bot API description)."""
    body = ast.parse(inspect.getsource(Message)).body[0]
    assert isinstance(body, ast.ClassDef)
    docs: dict[str, str] = {}
    for node, after in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = after.value.value
    return docs


def test_every_service_message_kind_aiogram_knows_is_left_unanswered() -> None:
    docs = _aiogram_field_docs()
    service = {kind.value for kind in ContentType if "service message" in docs.get(kind.value, "").lower()}
    assert service, "aiogram's Message docs changed: this check no longer finds the service messages"
    assert service <= SERVICE_CONTENT_TYPES
    assert not SERVICE_CONTENT_TYPES & {*UNREAD_KINDS, *CONTENT_TYPES, "text", "photo", "document", "live_photo"}


@e2e
@pytest.mark.parametrize("kind", sorted(UNREAD_KINDS))
async def test_a_kind_no_handler_reads_is_told_what_the_bot_accepts(harness: BotHarness, kind: str) -> None:
    h = harness
    chat = h.new_chat()
    requests = h.llm.request_count
    h.tg.user_content(chat, UNREAD_KINDS[kind])
    reply = await h.tg.wait_for_message(chat, timeout=15)
    assert reply.text == texts.NOT_SUPPORTED
    assert "фотографии и файлы" in (reply.text or "")
    assert len(await sent_after(h, chat, 0)) == 1
    assert h.llm.request_count == requests


# Kinds a handler reads only to say the bot does not understand them, which NOT_TEXT's list does not name.
UNNAMED_KINDS: dict[str, JsonDict] = {
    "contact": {"contact": {"phone_number": "+79990001122", "first_name": "Иван"}},
    "dice": {"dice": {"emoji": "🎲", "value": 3}},
    "poll": {
        "poll": {
            "id": "1",
            "question": "Чай или кофе?",
            "options": [
                {"persistent_id": "tea", "text": "Чай", "voter_count": 0},
                {"persistent_id": "coffee", "text": "Кофе", "voter_count": 0},
            ],
            "total_voter_count": 0,
            "is_closed": False,
            "is_anonymous": True,
            "type": "regular",
            "allows_multiple_answers": False,
            "allows_revoting": False,
            "members_only": False,
        }
    },
    "venue": {
        "venue": {"location": {"latitude": 55.75, "longitude": 37.62}, "title": "Кафе", "address": "Тверская, 1"},
        "location": {"latitude": 55.75, "longitude": 37.62},
    },
    "audio": {"audio": {"file_id": "song", "file_unique_id": "song-u", "duration": 180, "title": "Песня"}},
}


@e2e
@pytest.mark.parametrize("kind", sorted(UNNAMED_KINDS))
async def test_a_kind_the_not_text_list_does_not_name_gets_the_general_hint(harness: BotHarness, kind: str) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_content(chat, UNNAMED_KINDS[kind])
    reply = await h.tg.wait_for_message(chat, timeout=15)
    assert reply.text == texts.NOT_SUPPORTED
    assert len(await sent_after(h, chat, 0)) == 1


@e2e
async def test_service_messages_in_a_private_chat_get_no_reply(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    for content in PRIVATE_SERVICE.values():
        h.tg.user_content(chat, content)
    h.tg.user_content(chat, {"pinned_message": {"message_id": 1, "date": 0, "chat": {"id": chat, "type": "private"}}})
    # Messages of a chat are handled in order: once the sticker is answered, the service messages were handled.
    h.tg.user_sticker(chat)
    reply = await h.tg.wait_for_message(chat, timeout=15)
    assert reply.text == texts.NOT_TEXT
    assert [m.text for m in await sent_after(h, chat, 0)] == [texts.NOT_TEXT]


@e2e
async def test_a_private_chat_update_from_another_person_is_dropped(harness: BotHarness) -> None:
    # Only a forged update (a leaked webhook secret) can pair one person's chat with another's account.
    h = harness
    victim, forger = h.new_chat(), h.new_chat()
    await h.reply_settled(victim, "Мой PIN 4321, запомни")
    requests = h.llm.request_count
    h.tg.user_message(forger, "Что я тебе говорил?", user_id=victim)
    h.tg.user_message(forger, "/profile", user_id=victim)
    h.tg.user_message(forger, "/delete_context", user_id=victim)
    # Updates of a chat are handled in order: once the forger's own message is answered, the forged ones were seen.
    h.tg.user_sticker(forger)
    reply = await h.tg.wait_for_message(forger, timeout=15)
    assert reply.text == texts.NOT_TEXT
    assert [m.text for m in await sent_after(h, forger, 0)] == [texts.NOT_TEXT]
    assert h.llm.request_count == requests
    # The forged /delete_context erased nothing: the victim's context is all there.
    await h.reply_settled(victim, "Какой у меня PIN?")
    assert any("4321" in str(message.get("content")) for message in h.llm.requests[-1].messages)


@e2e
async def test_a_group_hears_only_the_private_chats_notice(harness: BotHarness) -> None:
    h = harness
    group = -1_000_000_000_000 - h.new_chat()
    h.tg.user_content(group, {"new_chat_members": [h.tg.bot_user()]})
    await h.tg.wait_for_message(group, after_message_id=0, timeout=15)
    member = h.new_chat()
    h.tg.user_content(group, UNREAD_KINDS["story"], user_id=member)
    h.tg.user_content(group, {"new_chat_title": "Новое название"}, user_id=member)
    h.tg.group_message(group, "Всем привет", user_id=member)
    h.tg.edit_user_message(group, h.tg.last_user_message_id(group), "Всем привет!")
    texts_sent = [m.text or "" for m in await sent_after(h, group, 0)]
    assert len(texts_sent) == 1 and "личных сообщениях" in texts_sent[0]


def forum(h: BotHarness) -> int:
    group = -1_000_000_000_000 - h.new_chat()
    h.tg.add_chat(group, "supergroup", title="Форум")
    return group


def topic_message(h: BotHarness, group: int, text: str, thread: int) -> int:
    topic = {"message_thread_id": thread, "is_topic_message": True}
    return h.tg.user_message(group, text, user_id=h.new_chat(), chat_type="supergroup", extra=topic)


def notices_sent(h: BotHarness, group: int) -> list[JsonDict]:
    calls = h.tg.calls_of("sendMessage")
    return [call.params for call in calls if str(call.params.get("chat_id")) == str(group) and call.ok]


@e2e
async def test_in_a_forum_the_private_chats_notice_goes_to_the_topic_written_in(harness: BotHarness) -> None:
    h = harness
    group = forum(h)
    topic_message(h, group, "Бот, ты тут?", thread=7)
    notice = await h.tg.wait_for_message(group, after_message_id=0, timeout=15)
    await h.settle()
    assert "личных сообщениях" in (notice.text or "")
    assert [params.get("message_thread_id") for params in notices_sent(h, group)] == [7]
    # General's messages are no topic's: the notice goes to General.
    general = forum(h)
    h.tg.user_message(general, "Бот?", user_id=h.new_chat(), chat_type="supergroup")
    await h.tg.wait_for_message(general, after_message_id=0, timeout=15)
    await h.settle()
    assert [params.get("message_thread_id") for params in notices_sent(h, general)] == [None]


@e2e
async def test_a_group_whose_notice_was_refused_is_told_at_its_next_message(harness: BotHarness) -> None:
    h = harness
    group = forum(h)
    h.tg.fail_next("sendMessage", 400, "Bad Request: TOPIC_CLOSED", chat_id=group)
    topic_message(h, group, "первое", thread=3)

    def refused() -> bool:
        calls = h.tg.calls_of("sendMessage")
        return any(str(call.params.get("chat_id")) == str(group) and call.ok is False for call in calls)

    await h.tg.wait_until(refused, 15, "the refused notice")
    await h.settle()
    assert h.tg.sent_messages(group) == []
    topic_message(h, group, "второе", thread=5)
    notice = await h.tg.wait_for_message(group, after_message_id=0, timeout=15)
    await h.settle()
    topic_message(h, group, "третье", thread=5)
    await h.settle()
    assert "личных сообщениях" in (notice.text or "")
    assert len(h.tg.sent_messages(group)) == 1


class RecordedClaims:
    """A ``GroupNoticeClaim`` that records what the middleware told it."""

    def __init__(self, answer: Claimed = Claimed.TELL) -> None:
        self.events: list[str] = []
        self.answer = answer

    async def __call__(self, chat_id: int) -> Claimed:
        self.events.append("claim")
        return self.answer

    async def told(self, chat_id: int) -> None:
        self.events.append("told")

    async def failed(self, chat_id: int) -> None:
        self.events.append("failed")


async def test_a_group_is_marked_told_across_instances_only_once_the_notice_went_out(tg: FakeTelegram) -> None:
    bot = Bot(tg.token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url)))
    group = -1_000_000_000_123
    tg.add_chat(group, "supergroup", title="Форум")
    claims = RecordedClaims()
    middleware = PrivateChatsOnly(claims)

    async def handler(event: TelegramObject, data: dict[str, Any]) -> None:
        raise AssertionError("a group's message reached a handler")

    async def arrive(message_id: int) -> None:
        message = {
            "message_id": message_id,
            "date": 0,
            "chat": {"id": group, "type": "supergroup", "title": "Форум", "is_forum": True},
            "from": {"id": 5, "is_bot": False, "first_name": "Участник"},
            "message_thread_id": 9,
            "is_topic_message": True,
            "text": "привет",
        }
        update = Update.model_validate({"update_id": message_id, "message": message}, context={"bot": bot})
        assert update.message is not None
        await middleware(handler, update, {"event_chat": update.message.chat, "bot": bot})

    tg.fail_next("sendMessage", 400, "Bad Request: TOPIC_CLOSED", chat_id=group)
    try:
        await arrive(1)
        assert claims.events == ["claim", "failed"]
        await arrive(2)
        assert claims.events == ["claim", "failed", "claim", "told"]
        await arrive(3)  # told: this instance asks no more
        assert claims.events == ["claim", "failed", "claim", "told"]
    finally:
        await bot.session.close()
    assert [call.params.get("message_thread_id") for call in tg.calls_of("sendMessage")] == [9, 9]
    assert len(tg.sent_messages(group)) == 1


async def test_a_group_another_instance_told_is_not_asked_about_again(tg: FakeTelegram) -> None:
    bot = Bot(tg.token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url)))
    group = -1_000_000_000_124
    tg.add_chat(group, "supergroup", title="Группа")
    claims = RecordedClaims(Claimed.TOLD)
    middleware = PrivateChatsOnly(claims)

    async def handler(event: TelegramObject, data: dict[str, Any]) -> None:
        raise AssertionError("a group's message reached a handler")

    try:
        for message_id in (1, 2, 3):
            message = {
                "message_id": message_id,
                "date": 0,
                "chat": {"id": group, "type": "supergroup", "title": "Группа"},
                "from": {"id": 5, "is_bot": False, "first_name": "Участник"},
                "text": "привет",
            }
            update = Update.model_validate({"update_id": message_id, "message": message}, context={"bot": bot})
            assert update.message is not None
            await middleware(handler, update, {"event_chat": update.message.chat, "bot": bot})
    finally:
        await bot.session.close()
    assert claims.events == ["claim"]
    assert tg.sent_messages(group) == []


async def test_a_group_member_who_addresses_the_bot_is_told_again_after_a_quiet_spell(tg: FakeTelegram) -> None:
    """After the group's first notice, other messages get nothing; a command for this bot, a mention of it or a reply
    to it is answered again, at most once per ``ADDRESSED_COOLDOWN_S``, and whatever other instances told."""
    bot = Bot(tg.token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url)))
    group = -1_000_000_000_125
    tg.add_chat(group, "supergroup", title="Группа")
    claims = RecordedClaims()
    now = [0.0]
    middleware = PrivateChatsOnly(claims, clock=lambda: now[0])
    me = f"@{tg.bot_username}"

    async def handler(event: TelegramObject, data: dict[str, Any]) -> None:
        raise AssertionError("a group's message reached a handler")

    async def arrive(text: str, entity: str | None = None, reply_to: JsonDict | None = None) -> None:
        message: JsonDict = {
            "message_id": len(tg.sent_messages(group)) + int(now[0]) + 1,
            "date": 0,
            "chat": {"id": group, "type": "supergroup", "title": "Группа"},
            "from": {"id": 5, "is_bot": False, "first_name": "Участник"},
            "text": text,
        }
        if entity is not None:
            start = text.index(entity)
            length = len(entity) if entity.startswith("@") else len(text.split()[0])
            kind = "mention" if entity.startswith("@") else "bot_command"
            message["entities"] = [{"type": kind, "offset": start, "length": length}]
        if reply_to is not None:
            message["reply_to_message"] = {
                "message_id": 1,
                "date": 0,
                "chat": message["chat"],
                "from": reply_to,
                "text": "…",
            }
        update = Update.model_validate({"update_id": 1, "message": message}, context={"bot": bot})
        assert update.message is not None
        await middleware(handler, update, {"event_chat": update.message.chat, "bot": bot})

    def told() -> int:
        return len(tg.sent_messages(group))

    try:
        await arrive("привет всем")
        assert told() == 1 and claims.events == ["claim", "told"]
        now[0] = 10.0
        await arrive(f"/model{me}", "/model")  # addressed, but told seconds ago
        assert told() == 1
        now[0] = 700.0
        await arrive("как дела?")  # not addressed: nothing, however long ago
        await arrive("/model@other_bot", "/model@other_bot")
        await arrive("ответ", reply_to={"id": 99, "is_bot": True, "first_name": "Другой", "username": "other_bot"})
        assert told() == 1
        await arrive(f"/model{me}", "/model")
        assert told() == 2
        now[0] = 1400.0
        await arrive(f"{me.upper()} ты тут?", me.upper())
        assert told() == 3
        now[0] = 2100.0
        await arrive("ну?", reply_to=tg.bot_user())
        assert told() == 4
        now[0] = 2800.0
        await arrive("/profile", "/profile")  # a bare command: privacy mode delivers it only when meant for this bot
        assert told() == 5
        assert claims.events == ["claim", "told"]  # asked for: no instance's claim stands in the way
    finally:
        await bot.session.close()
    assert all("личных сообщениях" in (m.text or "") for m in tg.sent_messages(group))


# --- edited messages ---------------------------------------------------------------------------------------------


def test_an_edit_is_answered_once_per_message_and_once_a_cooldown_per_chat() -> None:
    now = [0.0]
    notices = EditNotices(cooldown=60, memory=3, clock=lambda: now[0])
    assert notices.should_tell(1, 10)
    assert not notices.should_tell(1, 10)
    assert not notices.should_tell(1, 11)  # another message of the chat within the cooldown
    assert notices.should_tell(2, 10)  # another chat
    now[0] = 61.0
    assert not notices.should_tell(1, 10)  # that message was answered already
    assert notices.should_tell(1, 11)
    for chat in range(3, 10):  # the memory keeps its size
        assert notices.should_tell(chat, 1)
    assert len(notices._told) == 3 and len(notices._last) == 3


@e2e
async def test_polling_asks_telegram_for_edited_messages(harness: BotHarness) -> None:
    assert "edited_message" in (harness.tg.allowed_updates or [])


@e2e
async def test_an_edited_question_gets_one_note_and_is_not_asked_again(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await answered(h, chat, "Привет", "Здравствуйте!")
    greeting = h.tg.last_user_message_id(chat)
    await answered(h, chat, "Сколько будет 2+3?", "5")
    question = h.tg.last_user_message_id(chat)
    last = h.tg.sent_messages(chat)[-1].message_id
    requests = h.llm.request_count

    h.tg.edit_user_message(chat, question, "Сколько будет 2+2?")
    note = await h.tg.wait_for_message(chat, after_message_id=last, timeout=15)
    assert note.text == texts.EDITS_NOT_SEEN
    assert note.reply_to_message_id == question

    # More edits of it, or of another message right away, are not answered again.
    h.tg.edit_user_message(chat, question, "Сколько будет 2+2? Срочно")
    h.tg.edit_user_message(chat, greeting, "Привет!")
    assert [m.message_id for m in await sent_after(h, chat, last)] == [note.message_id]
    assert h.llm.request_count == requests


@e2e
async def test_a_moving_live_location_is_not_answered_as_an_edit(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    h.tg.user_content(chat, {"location": {"latitude": 55.75, "longitude": 37.61, "live_period": 900}})
    await h.tg.wait_for_message(chat, timeout=15)
    await h.settle()
    last = h.tg.sent_messages(chat)[-1].message_id
    moved = {"location": {"latitude": 55.76, "longitude": 37.62, "live_period": 900}}
    h.tg.edit_user_message(chat, h.tg.last_user_message_id(chat), media=moved)
    assert await sent_after(h, chat, last) == []


@pytest.mark.slow
async def test_set_webhook_asks_telegram_for_edited_messages(tmp_path: Path) -> None:
    token = "4242:webhook-edits"
    async with FakeTelegram(token=token, webhook_auto_deliver=False) as tg:
        env = clean_env(
            POMOGATOR_BOT_TOKEN=token,
            POMOGATOR_TELEGRAM_API_URL=tg.base_url,
            POMOGATOR_TELEGRAM_WEBHOOK_SECRET="edits-secret-0123456789abcdefghijklmnopqrstuv",
        )
        result = await run_cli("bot", "set-webhook", "https://bot.example.com/webhooks/telegram", cwd=tmp_path, env=env)
        assert result.code == 0, result.stderr
        assert {"message", "edited_message", "callback_query"} <= set(tg.allowed_updates or [])
