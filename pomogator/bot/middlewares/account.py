"""Every message and button press is made by a stored person: touch them and hand the account to the handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.dispatcher.flags import get_flag
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Chat, TelegramObject, User
from loguru import logger

from pomogator.bot import texts
from pomogator.services.users import Person, UserService


class AccountMiddleware(BaseMiddleware):
    """Inner middleware: ``UserService.touch`` the sender and pass ``account``.

    Handlers flagged ``flags={"account": False}`` (the Stop button) skip the database. When the stored model was
    reset because premium ended, the user is told once, before the handler runs.
    """

    def __init__(self, users: UserService) -> None:
        self.users = users

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None or user.is_bot or get_flag(data, "account", default=True) is False:
            return await handler(event, data)
        account = await self.users.touch(
            Person(
                telegram_id=user.id,
                first_name=user.first_name,
                last_name=user.last_name or "",
                username=user.username,
                language=user.language_code,
            )
        )
        data["account"] = account
        chat: Chat | None = data.get("event_chat")
        if account.model_reset and chat is not None:
            bot: Bot = data["bot"]
            try:
                await bot.send_message(chat.id, texts.model_reset(account.model))
            except TelegramAPIError as exc:
                logger.info("Model reset notice not delivered: {}", exc.message)
        return await handler(event, data)
