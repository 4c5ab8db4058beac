"""The polling bot stops taking updates while the database is away, so that Telegram keeps them.

An update taken while PostgreSQL has refused connections for longer than the reconnect wait could only be answered
with "try again later"; left with Telegram (which keeps a bot's updates for a day), it is answered once the database
is back. In webhook mode the web app does the same by answering Telegram 503 (``pomogator.web.telegram_webhook``).
"""

from __future__ import annotations

import asyncio

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import GetUpdates
from aiogram.methods.base import Response, TelegramMethod, TelegramType
from loguru import logger

from pomogator.store.engine import PROBE_EVERY_S, Database


class PauseWhileDatabaseAway(BaseRequestMiddleware):
    """A session middleware: ``getUpdates`` waits while ``Database.reachable`` says no."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        if isinstance(method, GetUpdates) and not await self.database.reachable():
            logger.warning("The database is unavailable: updates are left with Telegram until it is back")
            # Polling is the point: only trying the database tells when it is back.
            while not await self.database.reachable():  # noqa: ASYNC110
                await asyncio.sleep(PROBE_EVERY_S)
            logger.info("The database is back: taking updates again")
        return await make_request(bot, method)
