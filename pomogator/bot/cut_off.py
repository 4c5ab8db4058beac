"""Updates a shutdown cut off: Telegram was told they arrived and will not send them again, so their people are
asked to (polling and webhook mode alike)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiogram import Bot
from aiogram.types import ReplyParameters, Update
from loguru import logger

from pomogator.bot import texts

# How long the "send it again" notice to a person whose update a shutdown cut off may take.
NOTICE_TIMEOUT_S = 5.0


async def ask_to_send_again(bot: Bot, updates: Iterable[Update]) -> None:
    """Reply to each cut-off message with ``texts.CUT_OFF_BY_RESTART``; best effort, the process is stopping."""
    await asyncio.gather(*(_ask_again(bot, update) for update in updates))


async def _ask_again(bot: Bot, update: Update) -> None:
    message = update.message
    if message is None:
        return
    try:
        async with asyncio.timeout(NOTICE_TIMEOUT_S):
            await bot.send_message(
                message.chat.id,
                texts.CUT_OFF_BY_RESTART,
                reply_parameters=ReplyParameters(message_id=message.message_id, allow_sending_without_reply=True),
            )
    except Exception as exc:
        logger.warning("Could not ask chat {} to send again: {}", message.chat.id, type(exc).__name__)
