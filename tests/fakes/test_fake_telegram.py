"""Self-tests of the fake Telegram Bot API, driven through the real aiogram client."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
)
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    InaccessibleMessage,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from aiohttp import web

from tests.fakes.telegram_server import FakeTelegram, RateLimits, SentMessage, split_like_client

TOKEN = "123456:TEST-token"
CHAT = 501


def keyboard(*pairs: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=text, callback_data=data)] for text, data in pairs]
    )


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as fake:
        fake.add_chat(CHAT)
        yield fake


def make_bot(fake: FakeTelegram, token: str = TOKEN) -> Bot:
    return Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url)))


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    client = make_bot(tg)
    try:
        yield client
    finally:
        await client.session.close()


async def test_get_me_describes_the_bot(bot: Bot, tg: FakeTelegram) -> None:
    me = await bot.get_me()
    assert me.id == 123456
    assert me.is_bot
    assert me.username == tg.bot_username
    assert tg.calls[-1].method == "getMe"
    assert tg.calls[-1].ok is True


async def test_send_edit_delete_keep_state(bot: Bot, tg: FakeTelegram) -> None:
    sent = await bot.send_message(
        CHAT, "<b>Hello</b> &amp; welcome", parse_mode=ParseMode.HTML, reply_markup=keyboard(("Go", "go"))
    )
    assert sent.text == "Hello & welcome"
    assert sent.entities is not None and sent.entities[0].type == "bold"
    assert sent.html_text == "<b>Hello</b> &amp; welcome"

    edited = await bot.edit_message_text("Bye", chat_id=CHAT, message_id=sent.message_id)
    assert isinstance(edited, Message)
    assert edited.text == "Bye"

    [message] = tg.sent_messages(CHAT)
    assert message.text == "Bye"
    assert message.history == ["<b>Hello</b> &amp; welcome"]
    # Editing the text without reply_markup drops the inline keyboard, as on Telegram.
    assert message.reply_markup is None

    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("Bye", chat_id=CHAT, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="Too many entities: 101"):
        await bot.edit_message_text("<b>x</b> " * 101, chat_id=CHAT, message_id=sent.message_id, parse_mode="HTML")
    assert message.text == "Bye"

    assert await bot.delete_message(CHAT, sent.message_id) is True
    assert tg.sent_messages(CHAT) == []
    assert tg.sent_messages(CHAT, include_deleted=True)[0].deleted
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(CHAT, sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("again", chat_id=CHAT, message_id=sent.message_id)


async def test_edit_reply_markup_and_not_modified(bot: Bot, tg: FakeTelegram) -> None:
    sent = await bot.send_message(CHAT, "pick", reply_markup=keyboard(("A", "a")))
    await bot.edit_message_reply_markup(chat_id=CHAT, message_id=sent.message_id, reply_markup=keyboard(("B", "b")))
    assert tg.sent_messages(CHAT)[0].callback_data == ["b"]
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(chat_id=CHAT, message_id=sent.message_id, reply_markup=keyboard(("B", "b")))


@pytest.mark.parametrize(
    ("text", "parse_mode", "error"),
    [
        ("<b>unclosed", ParseMode.HTML, "Bad Request: can't parse entities: Can't find end tag"),
        ("<foo>x</foo>", ParseMode.HTML, 'Unsupported start tag "foo" at byte offset 0'),
        ("", None, "Bad Request: message text is empty"),
        ("<b> </b>", ParseMode.HTML, "Bad Request: text must be non-empty"),
        ("x" * 4097, None, "Bad Request: message is too long"),
        ("<b>x</b> " * 101, ParseMode.HTML, "Bad Request: can't parse entities: Too many entities: 101"),
    ],
)
async def test_invalid_texts_are_rejected(
    bot: Bot, tg: FakeTelegram, text: str, parse_mode: str | None, error: str
) -> None:
    with pytest.raises(TelegramBadRequest) as caught:
        await bot.send_message(CHAT, text, parse_mode=parse_mode)
    assert error in caught.value.message
    assert tg.sent_messages(CHAT) == []
    assert tg.calls[-1].error_code == 400


async def test_limit_counts_utf16_units(bot: Bot, tg: FakeTelegram) -> None:
    await bot.send_message(CHAT, "😀" * 2048)
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(CHAT, "😀" * 2048 + "x")


async def test_unknown_chat_and_bad_buttons(bot: Bot, tg: FakeTelegram) -> None:
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(999, "hi")
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(CHAT, "hi", reply_markup=keyboard(("long", "x" * 65)))
    bad_url = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="site", url="not a url")]])
    with pytest.raises(TelegramBadRequest, match="URL 'not a url' is invalid"):
        await bot.send_message(CHAT, "hi", reply_markup=bad_url)
    # 64 bytes of UTF-8 is still fine even though it is fewer characters.
    await bot.send_message(CHAT, "ok", reply_markup=keyboard(("cyr", "я" * 32)))
    assert tg.sent_texts(CHAT) == ["ok"]


async def test_injected_flood_error_surfaces_as_retry_after(bot: Bot, tg: FakeTelegram) -> None:
    tg.fail_next("sendMessage", 429, retry_after=7)
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(CHAT, "hi")
    assert caught.value.retry_after == 7
    assert "Too Many Requests: retry after 7" in caught.value.message
    assert tg.flood_errors == 1
    await bot.send_message(CHAT, "hi")
    assert tg.sent_texts(CHAT) == ["hi"]


async def test_fault_for_one_chat_only(bot: Bot, tg: FakeTelegram) -> None:
    tg.add_chat(777)
    tg.fail_next("sendMessage", 400, "Bad Request: injected", chat_id=777)
    await bot.send_message(CHAT, "fine")
    with pytest.raises(TelegramBadRequest, match="injected"):
        await bot.send_message(777, "nope")
    await bot.send_message(777, "now fine")
    assert tg.sent_texts(777) == ["now fine"]


async def test_rate_limits_per_chat() -> None:
    limits = RateLimits(per_chat_rate=1.0, per_chat_burst=2.0)
    async with FakeTelegram(token=TOKEN, enforce_limits=True, limits=limits) as fake:
        fake.add_chat(CHAT)
        fake.add_chat(CHAT + 1)
        client = make_bot(fake)
        try:
            await client.send_message(CHAT, "1")
            await client.send_message(CHAT, "2")
            with pytest.raises(TelegramRetryAfter) as caught:
                await client.send_message(CHAT, "3")
            assert caught.value.retry_after >= 1
            # Another chat has its own budget.
            await client.send_message(CHAT + 1, "other")
            assert fake.flood_errors == 1
            # Rejected requests do not spend the budget, a wait does restore it.
            await asyncio.sleep(1.05)
            await client.send_message(CHAT, "3")
            assert fake.sent_texts(CHAT) == ["1", "2", "3"]
        finally:
            await client.session.close()


async def test_blocked_user_is_forbidden(bot: Bot, tg: FakeTelegram) -> None:
    tg.block_user(CHAT)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(CHAT, "hi")
    with pytest.raises(TelegramForbiddenError):
        await bot.send_chat_action(CHAT, "typing")
    tg.unblock_user(CHAT)
    await bot.send_message(CHAT, "hi")


async def test_long_polling_delivers_and_confirms(bot: Bot, tg: FakeTelegram) -> None:
    started = time.monotonic()
    empty = await bot.get_updates(timeout=1)
    assert empty == []
    assert time.monotonic() - started >= 0.9

    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.2)
    assert not poll.done()
    update_id = tg.user_message(CHAT, "/start")
    updates = await asyncio.wait_for(poll, 2)
    assert [u.update_id for u in updates] == [update_id]
    message = updates[0].message
    assert message is not None and message.text == "/start"
    assert message.from_user is not None and message.from_user.id == CHAT
    assert message.entities is not None and message.entities[0].type == "bot_command"

    # Not confirmed yet: a restarted bot gets it again.
    other = make_bot(tg)
    try:
        again = await other.get_updates(timeout=0)
        assert [u.update_id for u in again] == [update_id]
    finally:
        await other.session.close()

    assert await bot.get_updates(offset=update_id + 1, timeout=0) == []
    assert tg.pending_updates == []


async def test_get_updates_limit_and_allowed_updates(bot: Bot, tg: FakeTelegram) -> None:
    first = tg.user_message(CHAT, "one")
    tg.user_message(CHAT, "two")
    batch = await bot.get_updates(limit=1, timeout=0)
    assert [u.update_id for u in batch] == [first]
    sent = await bot.send_message(CHAT, "menu", reply_markup=keyboard(("A", "a")))
    tg.press_button(CHAT, sent.message_id, "a")
    only_callbacks = await bot.get_updates(offset=first, allowed_updates=["callback_query"], timeout=0)
    assert [u.callback_query is not None for u in only_callbacks] == [True]


async def test_second_get_updates_terminates_the_first(bot: Bot, tg: FakeTelegram) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.2)
    second = asyncio.create_task(bot.get_updates(timeout=3))
    # The older poll is cut off at once, not when the newer one ends.
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
        await asyncio.wait_for(first, 0.5)
    update_id = tg.user_message(CHAT, "late")
    assert [u.update_id for u in await asyncio.wait_for(second, 1)] == [update_id]


async def test_callback_query_can_be_answered_once(bot: Bot, tg: FakeTelegram) -> None:
    sent = await bot.send_message(CHAT, "choose", reply_markup=keyboard(("Yes", "yes"), ("No", "no")))
    with pytest.raises(LookupError):
        tg.press_button(CHAT, sent.message_id, "maybe")
    query_id = tg.press_button(CHAT, sent.message_id, "yes")
    [update] = await bot.get_updates(timeout=1)
    assert update.callback_query is not None
    assert update.callback_query.id == query_id
    assert update.callback_query.data == "yes"
    assert update.callback_query.message is not None
    assert update.callback_query.message.message_id == sent.message_id

    assert await bot.answer_callback_query(query_id, text="Done") is True
    assert tg.callback_answer(query_id) == {"callback_query_id": query_id, "text": "Done"}
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query_id)


async def test_document_download(bot: Bot, tg: FakeTelegram) -> None:
    data = b"%PDF-1.4 fake document body"
    tg.user_document(CHAT, data, "report.pdf", "application/pdf", caption="read this")
    [update] = await bot.get_updates(timeout=1)
    message = update.message
    assert message is not None and message.document is not None
    assert message.caption == "read this"
    assert message.document.file_name == "report.pdf"
    assert message.document.file_size == len(data)

    file = await bot.get_file(message.document.file_id)
    assert file.file_path is not None and file.file_path.endswith(".pdf")
    buffer = await bot.download(message.document.file_id)
    assert buffer is not None
    assert buffer.read() == data


async def test_photo_sizes_and_too_big_file(bot: Bot, tg: FakeTelegram) -> None:
    tg.user_photo(CHAT, b"\xff\xd8jpeg", media_group_id="album1")
    tg.user_document(CHAT, b"small", "huge.bin", "application/octet-stream", file_size=25 * 1024 * 1024)
    photo_update, doc_update = await bot.get_updates(timeout=1)
    assert photo_update.message is not None and photo_update.message.photo is not None
    sizes = photo_update.message.photo
    assert [s.width for s in sizes] == sorted(s.width for s in sizes)
    assert photo_update.message.media_group_id == "album1"
    target = io.BytesIO()
    await bot.download(sizes[-1], destination=target)
    assert target.getvalue() == b"\xff\xd8jpeg"

    assert doc_update.message is not None and doc_update.message.document is not None
    with pytest.raises(TelegramBadRequest, match="file is too big"):
        await bot.get_file(doc_update.message.document.file_id)


async def test_other_user_content_types(bot: Bot, tg: FakeTelegram) -> None:
    tg.user_sticker(CHAT)
    tg.user_voice(CHAT)
    tg.user_location(CHAT)
    tg.group_message(-100500, "hello group")
    updates = await bot.get_updates(timeout=1)
    messages = [u.message for u in updates]
    assert all(m is not None for m in messages)
    sticker, voice, location, group = (m for m in messages if m is not None)
    assert sticker.sticker is not None
    assert voice.voice is not None and voice.voice.duration == 3
    assert location.location is not None
    assert group.chat.type == "supergroup" and group.text == "hello group"


async def test_send_and_fetch_uploaded_document(bot: Bot, tg: FakeTelegram) -> None:
    sent = await bot.send_document(
        CHAT, BufferedInputFile(b"a,b\n1,2\n", filename="table.csv"), caption="<i>table</i>", parse_mode="HTML"
    )
    assert sent.document is not None
    assert sent.caption == "table"
    [message] = tg.sent_messages(CHAT)
    assert message.kind == "document"
    assert tg.file_bytes(sent.document.file_id) == b"a,b\n1,2\n"
    assert tg.calls[-1].files and list(tg.calls[-1].files.values()) == [b"a,b\n1,2\n"]


async def test_message_drafts(bot: Bot, tg: FakeTelegram) -> None:
    assert await bot.send_message_draft(CHAT, draft_id=7, text="") is True
    assert await bot.send_message_draft(CHAT, draft_id=7, text="<b>Hel</b>", parse_mode="HTML")
    assert await bot.send_message_draft(CHAT, draft_id=7, text="Hello")
    drafts = tg.drafts(CHAT)
    assert drafts.count == 3
    assert drafts.latest_text == "Hello"
    assert [frame.text for frame in drafts.frames] == ["", "Hel", "Hello"]
    assert drafts.draft_ids == [7]
    # Drafts are ephemeral: they are not messages.
    assert tg.sent_messages(CHAT) == []

    with pytest.raises(TelegramBadRequest, match="draft_id"):
        await bot.send_message_draft(CHAT, draft_id=0, text="x")
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message_draft(CHAT, draft_id=7, text="<b>x", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="Too many entities: 101"):
        await bot.send_message_draft(CHAT, draft_id=7, text="<i>x</i> " * 101, parse_mode="HTML")
    tg.add_chat(-100600, "supergroup")
    with pytest.raises(TelegramBadRequest):
        await bot.send_message_draft(-100600, draft_id=7, text="x")
    assert tg.drafts(CHAT).count == 3


async def test_drafts_are_rate_limited() -> None:
    limits = RateLimits(draft_rate=1.0, draft_burst=1.0)
    async with FakeTelegram(token=TOKEN, enforce_limits=True, limits=limits) as fake:
        fake.add_chat(CHAT)
        client = make_bot(fake)
        try:
            await client.send_message_draft(CHAT, draft_id=1, text="a")
            with pytest.raises(TelegramRetryAfter):
                await client.send_message_draft(CHAT, draft_id=1, text="ab")
            # Drafts have their own bucket: the final message still goes through.
            await client.send_message(CHAT, "ab")
        finally:
            await client.session.close()
        assert fake.flood_errors == 1
        assert fake.sent_texts(CHAT) == ["ab"]


async def test_chat_actions_commands_descriptions(bot: Bot, tg: FakeTelegram) -> None:
    await bot.send_chat_action(CHAT, "typing")
    assert tg.chat_actions(CHAT) == ["typing"]
    with pytest.raises(TelegramBadRequest, match="wrong parameter action"):
        await bot.send_chat_action(CHAT, "dancing")

    commands = [BotCommand(command="start", description="Start"), BotCommand(command="new", description="New")]
    assert await bot.set_my_commands(commands)
    assert [c.command for c in await bot.get_my_commands()] == ["start", "new"]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad-Name", description="x")])

    await bot.set_my_description("d" * 512)
    assert (await bot.get_my_description()).description == "d" * 512
    with pytest.raises(TelegramBadRequest):
        await bot.set_my_description("d" * 513)
    await bot.set_my_short_description("short")
    assert (await bot.get_my_short_description()).short_description == "short"
    with pytest.raises(TelegramBadRequest):
        await bot.set_my_short_description("s" * 121)


async def test_http_level_errors(tg: FakeTelegram) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{tg.base_url}/bot{TOKEN}/noSuchMethod") as response:
            assert response.status == 404
            assert await response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        async with session.post(f"{tg.base_url}/bot1:wrong/getMe") as response:
            assert response.status == 401
        # Plain JSON bodies are accepted too, and method names are case-insensitive.
        async with session.post(
            f"{tg.base_url}/bot{TOKEN}/SENDMESSAGE", json={"chat_id": CHAT, "text": "123"}
        ) as response:
            body = await response.json()
            assert body["ok"] is True
            assert body["result"]["text"] == "123"


async def test_dispatcher_polling_round_trip(tg: FakeTelegram) -> None:
    client = make_bot(tg)
    dispatcher = Dispatcher()

    @dispatcher.message()
    async def echo(message: Message) -> None:
        await message.answer(f"echo: <b>{message.text}</b>", parse_mode="HTML")

    polling = asyncio.create_task(dispatcher.start_polling(client, handle_signals=False, polling_timeout=1))
    try:
        tg.user_message(CHAT, "ping")
        reply = await tg.wait_for_message(CHAT, timeout=5)
        assert reply.text == "echo: ping"
        assert reply.html == "echo: <b>ping</b>"
        tg.user_message(CHAT, "pong")
        second = await tg.wait_for_message(CHAT, lambda m: "pong" in (m.text or ""), timeout=5)
        assert second.message_id > reply.message_id
        await tg.wait_idle(quiet=0.2, timeout=5)
        assert tg.undelivered_updates == []
    finally:
        await dispatcher.stop_polling()
        await asyncio.wait_for(polling, 5)
        await client.session.close()


async def test_wait_for_message_times_out_with_context(tg: FakeTelegram) -> None:
    tg.user_message(CHAT, "hello")
    with pytest.raises(TimeoutError, match="no matching bot message"):
        await tg.wait_for_message(CHAT, timeout=0.2)


async def test_webhook_delivery_with_secret(bot: Bot, tg: FakeTelegram) -> None:
    received: list[tuple[str | None, dict[str, object]]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json()))
        # Webhook reply: Telegram executes a method returned in the response body.
        return web.json_response({"method": "sendMessage", "chat_id": CHAT, "text": "from webhook"})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        assert await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="s3cret")
        info = await bot.get_webhook_info()
        assert info.url == f"http://127.0.0.1:{port}/hook"
        with pytest.raises(TelegramConflictError, match="webhook is active"):
            await bot.get_updates(timeout=0)

        update_id = tg.user_message(CHAT, "via webhook")
        await tg.wait_until(lambda: bool(tg.sent_messages(CHAT)), timeout=5)
        assert received[0][0] == "s3cret"
        assert received[0][1]["update_id"] == update_id
        assert tg.sent_texts(CHAT) == ["from webhook"]
        assert tg.pending_updates == []
    finally:
        await bot.delete_webhook()
        await runner.cleanup()


async def test_delete_webhook_drops_pending_updates(bot: Bot, tg: FakeTelegram) -> None:
    tg.user_message(CHAT, "old")
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert await bot.get_updates(timeout=0) == []


async def test_splitting_helpers(tg: FakeTelegram) -> None:
    text = ("word " * 2000).strip()
    parts = split_like_client(text)
    assert len(parts) == 3
    assert "".join(parts) == text
    ids = tg.user_long_message(CHAT, text)
    assert len(ids) == 3
    assert len(tg.pending_updates) == 3


def test_sent_message_button_helpers() -> None:
    message = SentMessage(
        chat_id=1,
        message_id=1,
        from_bot=True,
        date=0,
        text="x",
        reply_markup={"inline_keyboard": [[{"text": "Pay 100", "callback_data": "pay:100"}]]},
    )
    assert message.button_texts == ["Pay 100"]
    assert message.button("Pay")["callback_data"] == "pay:100"
    with pytest.raises(LookupError):
        message.button("Refund")


async def test_stale_button_on_deleted_message(bot: Bot, tg: FakeTelegram) -> None:
    sent = await bot.send_message(CHAT, "old menu", reply_markup=keyboard(("A", "a")))
    await bot.delete_message(CHAT, sent.message_id)
    with pytest.raises(LookupError):
        tg.press_button(CHAT, sent.message_id, "a")
    tg.press_button(CHAT, sent.message_id, "a", strict=False)
    [update] = await bot.get_updates(timeout=1)
    assert update.callback_query is not None
    assert isinstance(update.callback_query.message, InaccessibleMessage)


async def test_whitespace_text_and_blocked_edit(bot: Bot, tg: FakeTelegram) -> None:
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(CHAT, "  \n ")
    sent = await bot.send_message(CHAT, "x")
    tg.block_user(CHAT, notify=True)
    with pytest.raises(TelegramForbiddenError):
        await bot.edit_message_text("y", chat_id=CHAT, message_id=sent.message_id)
    [update] = await bot.get_updates(timeout=0)
    assert update.my_chat_member is not None
    assert update.my_chat_member.new_chat_member.status == "kicked"


async def test_sending_a_message_replaces_the_draft(bot: Bot, tg: FakeTelegram) -> None:
    await bot.send_message_draft(CHAT, draft_id=3, text="partial")
    assert tg.drafts(CHAT).active
    await bot.send_message(CHAT, "partial and final")
    assert not tg.drafts(CHAT).active
    assert tg.drafts(CHAT).latest_text == "partial"


async def test_updates_of_unwanted_types_are_dropped(bot: Bot, tg: FakeTelegram) -> None:
    tg.block_user(CHAT, notify=True)
    update_id = tg.user_message(CHAT, "hi")
    updates = await bot.get_updates(allowed_updates=["message"], timeout=0)
    assert [u.update_id for u in updates] == [update_id]
    assert [u["update_id"] for u in tg.pending_updates] == [update_id]
