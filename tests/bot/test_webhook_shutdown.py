"""Webhook mode's shutdown: an update Telegram was told had arrived, cut off by the grace period, is not lost
silently (Telegram will not send it again)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from aiogram import Bot, Dispatcher
from aiogram.types import Update

from pomogator.bot import texts
from pomogator.bot.factory import create_bot
from pomogator.bot.shared import open_shared_state
from pomogator.bot.webhook import WebhookUpdates
from tests.conftest import make_settings
from tests.fakes.telegram_server import FakeTelegram

CHAT = 4242


class StuckDispatcher:
    """A dispatcher whose updates wait their turn for ever (a chat's long answer ahead of them)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def feed_update(self, bot: Bot, update: Update, **kwargs: Any) -> Any:
        self.started.set()
        await asyncio.Event().wait()


def message_update(update_id: int, message_id: int, text: str) -> bytes:
    message = {
        "message_id": message_id,
        "date": 0,
        "chat": {"id": CHAT, "type": "private"},
        "from": {"id": CHAT, "is_bot": False, "first_name": "Ann"},
        "text": text,
    }
    return json.dumps({"update_id": update_id, "message": message}).encode()


async def test_an_update_cut_off_at_shutdown_asks_its_person_to_send_it_again(tg: FakeTelegram) -> None:
    tg.add_chat(CHAT)
    settings = make_settings(bot_token=tg.token, telegram_api_url=tg.base_url)
    dispatcher = StuckDispatcher()
    async with open_shared_state(settings) as shared:
        bot = create_bot(settings)
        try:
            updates = WebhookUpdates(bot, cast(Dispatcher, dispatcher), shared)
            update_id = tg.user_message(CHAT, "вопрос, который ждёт своей очереди")
            message_id = tg.last_user_message_id(CHAT)
            await updates.accept(message_update(update_id, message_id, "вопрос, который ждёт своей очереди"))
            await dispatcher.started.wait()
            assert not await updates.drain(0.1)
        finally:
            await bot.session.close()
    [notice] = [m for m in tg.sent_messages(CHAT) if m.text == texts.CUT_OFF_BY_RESTART]
    assert notice.reply_to_message_id == message_id
    assert updates.in_progress == 0
