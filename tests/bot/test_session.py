"""The Bot API session: requests without files go out as JSON, uploads as aiogram's multipart forms."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup

from pomogator.bot.factory import BOT_API_CONNECTIONS, create_bot
from pomogator.bot.session import JsonBodySession
from pomogator.tls import client_ssl
from tests.conftest import make_settings
from tests.fakes.telegram_server import FakeTelegram

CHAT = 5100


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    tg.add_chat(CHAT)
    bot = create_bot(make_settings(bot_token=tg.token, telegram_api_url=tg.base_url))
    yield bot
    await bot.session.close()


async def test_a_message_goes_out_as_json_with_the_bots_defaults(bot: Bot, tg: FakeTelegram) -> None:
    markup = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="⏹ Стоп", callback_data="stop:1")]])
    sent = await bot.send_message(CHAT, "<b>Привет</b>, мир", reply_markup=markup, disable_notification=False)

    call = tg.calls[-1]
    assert call.method == "sendMessage"
    assert call.content_type == "application/json"
    # The bot's defaults (HTML, no link previews) are applied; values left unset are not sent.
    assert call.params["parse_mode"] == "HTML"
    assert call.params["link_preview_options"] == {"is_disabled": True}
    assert call.params["disable_notification"] is False
    assert "message_thread_id" not in call.params
    assert call.params["reply_markup"] == {"inline_keyboard": [[{"text": "⏹ Стоп", "callback_data": "stop:1"}]]}
    message = tg.sent_messages(CHAT)[-1]
    assert (message.text, message.button_texts) == ("Привет, мир", ["⏹ Стоп"])
    assert sent.message_id == message.message_id
    assert sent.entities is not None and sent.entities[0].type == "bold"


async def test_an_upload_goes_out_as_a_multipart_form(bot: Bot, tg: FakeTelegram) -> None:
    await bot.send_document(CHAT, BufferedInputFile(b"%PDF-1.4 data", filename="report.pdf"), caption="Отчёт")

    call = tg.calls[-1]
    assert call.method == "sendDocument"
    assert call.content_type == "multipart/form-data"
    assert list(call.files.values()) == [b"%PDF-1.4 data"]
    assert call.params["caption"] == "Отчёт"


async def test_errors_come_back_as_aiograms(bot: Bot, tg: FakeTelegram) -> None:
    tg.fail_next("sendMessage", 400, "Bad Request: message text is empty")
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(CHAT, "text")
    assert tg.calls[-1].content_type == "application/json"


async def test_many_calls_are_in_flight_at_once(bot: Bot, tg: FakeTelegram) -> None:
    # Under load a call must not wait for a free connection behind others (aiogram's default allows 100 at once).
    tg.hold("sendChatAction")
    calls = [asyncio.create_task(bot.send_chat_action(CHAT, "typing")) for _ in range(150)]
    try:
        await tg.wait_until(lambda: tg.active_requests == 150, timeout=20, what="150 calls in flight")
    finally:
        tg.release("sendChatAction")
    assert await asyncio.gather(*calls) == [True] * 150


async def test_the_session_is_set_up_as_aiograms_own_but_with_the_processs_tls(bot: Bot) -> None:
    # JsonBodySession sets AiohttpSession's attributes itself (its __init__ would make a certifi context to discard);
    # a new aiogram that keeps more state in __init__ shows up here.
    own, session = AiohttpSession(), bot.session
    assert isinstance(session, JsonBodySession)
    try:
        assert set(vars(session)) == set(vars(own))
        assert session._connector_init.keys() == own._connector_init.keys()
        assert session._connector_init["ssl"] is client_ssl()
        assert session._connector_init["limit"] == BOT_API_CONNECTIONS
    finally:
        await own.close()
