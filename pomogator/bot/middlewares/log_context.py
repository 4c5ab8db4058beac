"""Log records made while handling an update carry its id, the user and the chat."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import Chat, TelegramObject, Update, User
from loguru import logger


class LogContextMiddleware(BaseMiddleware):
    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        chat: Chat | None = data.get("event_chat")
        update_id = event.update_id if isinstance(event, Update) else None
        with logger.contextualize(
            update_id=update_id,
            user_id=user.id if user is not None else None,
            chat_id=chat.id if chat is not None else None,
        ):
            return await handler(event, data)
