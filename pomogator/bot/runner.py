"""``pomogator run bot``: long polling on the core services (in webhook mode the web app receives the updates)."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramNetworkError,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from loguru import logger

from pomogator.bot.bot_profile import sync_bot_profile
from pomogator.bot.cut_off import ask_to_send_again
from pomogator.bot.factory import create_bot, create_dispatcher
from pomogator.bot.liveness import PollWatch, polling_and_database
from pomogator.bot.middlewares import UpdateTracker
from pomogator.bot.outage_pause import PauseWhileDatabaseAway
from pomogator.bot.shared import open_shared_state
from pomogator.config import Settings
from pomogator.container import build_services
from pomogator.errors import ConfigError
from pomogator.heartbeat import keep_heartbeat
from pomogator.jobs import start_jobs
from pomogator.memory import keep_trimming

MAX_CONNECT_DELAY = 30.0
UNREACHABLE_HINT = (
    " until it answers (check the network; POMOGATOR_TELEGRAM_API_URL names another Bot API server; Ctrl-C stops)"
)


async def run_polling(settings: Settings) -> None:
    """Poll until SIGTERM or SIGINT, then give the updates in progress ``shutdown_grace_seconds`` to finish.

    Pending updates are never dropped: messages sent while the bot was down are answered when it is back.
    Raises ConfigError when Telegram rejects the token or a webhook is set (``_refuse_a_webhook``); webhook mode
    itself is refused before (``pomogator.servers.run_bot``).
    """
    async with build_services(settings) as services, open_shared_state(settings) as shared:
        bot = create_bot(settings)
        watch = PollWatch()
        bot.session.middleware(watch)
        bot.session.middleware(PauseWhileDatabaseAway(services.database))
        try:
            await _check_token(bot)
            # Only one instance can poll, so a chat's turns stay in this process, in arrival order.
            dispatcher = create_dispatcher(
                services,
                storage=shared.storage,
                stops=shared.stops,
                claim_group_notice=shared.claim_group_notice,
                erasures=shared.erasures,
            )
            tracker: UpdateTracker = dispatcher["tracker"]
            await _refuse_a_webhook(bot)
            background = [
                asyncio.create_task(sync_bot_profile(bot, settings.support_contact)),
                asyncio.create_task(keep_heartbeat(lambda: polling_and_database(watch, services.database))),
                asyncio.create_task(keep_trimming(settings.memory_trim_seconds)),
                # As the web app does: a deployment without payments may run the bot alone.
                *start_jobs(settings, services),
            ]
            try:
                await dispatcher.start_polling(
                    bot, close_bot_session=False, allowed_updates=dispatcher.resolve_used_update_types()
                )
            finally:
                for task in background:
                    task.cancel()
                for task in background:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if tracker.active:
                    logger.info("Letting {} update(s) in progress finish", tracker.active)
                if not await tracker.drain(settings.shutdown_grace_seconds):
                    logger.warning("{} update(s) still in progress at shutdown were cut off", tracker.active)
                    # Cancelled before the services close, as in webhook mode: an answer finishing meanwhile would be
                    # kept and counted but never delivered, after its person was asked to send the message again.
                    cut_off = await tracker.cut_off()
                    # Polling confirmed them to Telegram, which will not send them again.
                    await ask_to_send_again(bot, cut_off)
        finally:
            await bot.session.close()
    logger.info("Bot stopped")


async def _check_token(bot: Bot) -> None:
    """Wait for the Bot API to answer (it may be starting too) and make sure it accepts the token."""
    delay = 1.0
    while True:
        try:
            await bot.me()
            return
        except TelegramUnauthorizedError:
            raise ConfigError("Telegram rejected POMOGATOR_BOT_TOKEN.") from None
        except (TelegramNetworkError, TelegramServerError) as exc:
            # The first time, what can be done about it: the bot keeps trying, as a container should.
            hint = UNREACHABLE_HINT if delay == 1.0 else ""
            logger.warning("The Bot API is not reachable ({}); retrying in {:.0f}s{}", exc.message, delay, hint)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_CONNECT_DELAY)


async def _refuse_a_webhook(bot: Bot) -> None:
    """Raises ConfigError when a webhook is set: Telegram delivers the updates to a web app, and removing it here
    would silently take them from that deployment (a polling container left behind after a switch to webhook
    mode, restarted later, did exactly that). Going back to polling is an explicit step."""
    try:
        info = await bot.get_webhook_info()
    except TelegramAPIError as exc:
        logger.warning("Could not check the webhook: {}", exc.message)
        return
    if info.url:
        host = urlsplit(info.url).hostname or "?"
        raise ConfigError(
            f"A webhook is set (to {host}): Telegram delivers this bot's updates to the web app there. To poll "
            "instead, run `pomogator bot delete-webhook` first."
        )
