"""The bot's commands, description and short description, set at start-up only when they differ.

These calls are flood-limited, so each value is read first; every step is best-effort and never stops the bot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BotCommand, BotCommandScopeAllPrivateChats
from loguru import logger

from pomogator.bot import texts


def bot_commands() -> list[BotCommand]:
    return [BotCommand(command=command, description=description) for command, description in texts.COMMANDS]


async def sync_bot_profile(bot: Bot, support: str) -> None:
    await _step("commands", lambda: _sync_commands(bot))
    await _step("description", lambda: _sync_description(bot, texts.bot_description(support)))
    await _step("short description", lambda: _sync_short_description(bot, texts.bot_short_description(support)))


async def _step(what: str, step: Callable[[], Awaitable[bool]]) -> None:
    try:
        changed = await step()
    except TelegramAPIError as exc:
        logger.warning("Could not update the bot's {}: {}", what, exc.message)
        return
    if changed:
        logger.info("Updated the bot's {}", what)


async def _sync_commands(bot: Bot) -> bool:
    """The command menu is for private chats only: in a group the bot does nothing but point to its private chat
    (``PrivateChatsOnly``), so a menu there would offer commands that are never answered. Commands an earlier
    version set for every chat (the default scope) are taken back."""
    wanted = bot_commands()
    private = BotCommandScopeAllPrivateChats()
    changed = False
    current = await bot.get_my_commands(scope=private)
    if [(c.command, c.description) for c in current] != [(c.command, c.description) for c in wanted]:
        await bot.set_my_commands(wanted, scope=private)
        changed = True
    if await bot.get_my_commands():
        await bot.delete_my_commands()
        changed = True
    return changed


async def _sync_description(bot: Bot, wanted: str) -> bool:
    current = await bot.get_my_description()
    if current.description == wanted:
        return False
    await bot.set_my_description(description=wanted)
    return True


async def _sync_short_description(bot: Bot, wanted: str) -> bool:
    current = await bot.get_my_short_description()
    if current.short_description == wanted:
        return False
    await bot.set_my_short_description(short_description=wanted)
    return True
