"""Whether the polling bot is alive, for the container heartbeat: Telegram answered a poll lately and the database
answers."""

from __future__ import annotations

import time

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import GetUpdates
from aiogram.methods.base import Response, TelegramMethod, TelegramType

from pomogator.store.engine import Database

# An idle long poll returns every 30 s (aiogram's polling timeout); this long without one means the bot no longer
# gets updates.
POLL_STALE_AFTER_S = 75.0


class PollWatch(BaseRequestMiddleware):
    """A session middleware that notes when the last ``getUpdates`` call succeeded."""

    def __init__(self) -> None:
        self.last_poll = time.monotonic()

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        response = await make_request(bot, method)
        if isinstance(method, GetUpdates):
            self.last_poll = time.monotonic()
        return response

    def polling(self) -> bool:
        return time.monotonic() - self.last_poll < POLL_STALE_AFTER_S


async def polling_and_database(watch: PollWatch, database: Database) -> bool:
    """The heartbeat's check for ``pomogator run bot``."""
    if not watch.polling():
        return False
    await database.ping()
    return True
