"""Webhook mode: updates that Telegram POSTs to the web app go to the same dispatcher the polling bot uses.

The web endpoint (``pomogator.web.telegram_webhook``) checks the secret and hands the body to ``WebhookUpdates``,
which answers at once and handles the update in a task of its own, so a long answer never holds Telegram's
request. Imported only when webhook mode is on: without it the web app does not load aiogram.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiogram import Bot, Dispatcher
from aiogram.methods.base import TelegramMethod
from aiogram.types import Update
from loguru import logger
from pydantic import ValidationError

from pomogator.bot.bot_profile import sync_bot_profile
from pomogator.bot.cut_off import ask_to_send_again
from pomogator.bot.factory import create_bot, create_dispatcher
from pomogator.bot.shared import SharedState, open_shared_state
from pomogator.config import Settings
from pomogator.container import Services


class NotAnUpdate(Exception):
    pass


class WebhookUpdates:
    def __init__(self, bot: Bot, dispatcher: Dispatcher, shared: SharedState) -> None:
        self.bot = bot
        self.dispatcher = dispatcher
        self.shared = shared
        self.accepting = True
        self._tasks: dict[asyncio.Task[None], Update] = {}

    @property
    def in_progress(self) -> int:
        return len(self._tasks)

    async def accept(self, body: bytes) -> None:
        """Start handling the update in ``body``; raises NotAnUpdate when it is not one. An update some instance
        already took (Telegram delivered it again) is skipped."""
        try:
            update = Update.model_validate_json(body, context={"bot": self.bot})
        except ValidationError:
            raise NotAnUpdate() from None
        if not await self.shared.first_delivery(update.update_id):
            logger.info("Update {} was delivered again; already taken", update.update_id)
            return
        if update.message is not None:
            await self.shared.arrived(update.message.chat.id, update.update_id)
        task = asyncio.create_task(self._handle(update), name=f"update-{update.update_id}")
        self._tasks[task] = update
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    async def _handle(self, update: Update) -> None:
        try:
            result = await self.dispatcher.feed_update(self.bot, update)
            if isinstance(result, TelegramMethod):
                await self.dispatcher.silent_call_request(self.bot, result)
        except Exception as exc:
            logger.opt(exception=exc).error("Update {} failed", update.update_id)
        finally:
            if update.message is not None:
                await self.shared.finished(update.message.chat.id, update.update_id)

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109 - the grace period is a plain deadline
        """Stop accepting and give the updates in progress ``timeout`` seconds; the rest are cancelled.
        True when all finished."""
        self.accepting = False
        if not self._tasks:
            return True
        logger.info("Letting {} update(s) in progress finish", len(self._tasks))
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        if not pending:
            return True
        logger.warning("{} update(s) still in progress at shutdown were cut off", len(pending))
        cut_off = [self._tasks[task] for task in pending if task in self._tasks]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        # Telegram was told they arrived and will not send them again: their people are asked to.
        await ask_to_send_again(self.bot, cut_off)
        return False


@contextlib.asynccontextmanager
async def open_webhook(settings: Settings, services: Services) -> AsyncIterator[WebhookUpdates]:
    """The bot, its shared state and dispatcher for as long as the web app runs; on exit the updates in progress
    get ``shutdown_grace_seconds`` to finish."""
    settings.require("bot_token", "openrouter_api_key")
    async with open_shared_state(settings) as shared:
        bot = create_bot(settings)
        try:
            dispatcher = create_dispatcher(
                services,
                chat_locks=shared.chat_locks,
                storage=shared.storage,
                stops=shared.stops,
                claim_group_notice=shared.claim_group_notice,
                erasures=shared.erasures,
            )
            updates = WebhookUpdates(bot, dispatcher, shared)
            profile = asyncio.create_task(sync_bot_profile(bot, settings.support_contact))
            try:
                yield updates
            finally:
                profile.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await profile
                await updates.drain(settings.shutdown_grace_seconds)
        finally:
            await bot.session.close()
