"""A process may build several dispatchers: each has routers and edit notices of its own."""

from __future__ import annotations

from pathlib import Path

from aiogram import Dispatcher

from pomogator.bot import texts
from pomogator.bot.factory import create_bot, create_dispatcher
from pomogator.bot.handlers import get_routers
from pomogator.container import build_services
from tests.bot.harness import TOKEN
from tests.conftest import make_settings
from tests.fakes.telegram_server import FakeTelegram


def test_each_call_builds_routers_of_its_own() -> None:
    first, second = get_routers(), get_routers()
    assert [router.name for router in first] == [router.name for router in second]
    assert not {id(router) for router in first} & {id(router) for router in second}


async def test_two_dispatchers_of_one_process_both_answer(tmp_path: Path) -> None:
    async with FakeTelegram(token=TOKEN) as tg:
        settings = make_settings(
            database_url=f"sqlite:///{tmp_path / 'bot.sqlite3'}", bot_token=TOKEN, telegram_api_url=tg.base_url
        )
        async with build_services(settings, migrate=True) as services:
            bot = create_bot(settings)
            first, second = create_dispatcher(services), create_dispatcher(services)
            try:
                offset = 0

                async def feed(dispatcher: Dispatcher) -> None:
                    nonlocal offset
                    for update in await bot.get_updates(offset=offset, timeout=0):
                        offset = update.update_id + 1
                        await dispatcher.feed_update(bot, update)

                for chat, dispatcher in ((7001, first), (7002, second)):
                    tg.user_message(chat, "/help")
                    await feed(dispatcher)
                    assert [m.html for m in tg.sent_messages(chat)] == [
                        texts.help_text(settings.support_contact, settings.tz)
                    ]

                chat = 7001
                edited = tg.last_user_message_id(chat)

                async def edit(dispatcher: Dispatcher) -> int:
                    tg.edit_user_message(chat, edited, "/help!")
                    await feed(dispatcher)
                    return tg.sent_texts(chat).count(texts.EDITS_NOT_SEEN)

                assert await edit(first) == 1
                assert await edit(first) == 1  # told already
                assert await edit(second) == 2  # the other dispatcher has told nobody yet
            finally:
                await bot.session.close()
