"""Every message and button press is made by a stored person: touch them and hand the account to the handler; a
message sent before its person was erased is dropped instead."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.flags import get_flag
from aiogram.types import Chat, Message, TelegramObject, Update, User

from pomogator.bot import texts
from pomogator.bot.erasures import ErasureMarks
from pomogator.bot.replies import tell_if_model_reset
from pomogator.services.users import Person, UserService

SENDER = "sender"
"""The ``account`` flag of a handler that takes ``sender`` instead (see ``AccountMiddleware``)."""


class AccountMiddleware(BaseMiddleware):
    """Inner middleware: ``UserService.touch`` the sender and pass ``account``.

    Handlers flagged ``flags={"account": False}`` (the Stop button) skip the database. Handlers flagged
    ``flags={"account": SENDER}`` (plain text for the model) get ``sender``: with ``defer`` (PostgreSQL, where the
    chat service touches the sender in the round trip that takes the request) the sender as Telegram describes them,
    untouched; otherwise their account. When the stored model was reset because premium ended, the user is told once,
    before the handler runs.

    A message sent before its person was erased (/delete_me confirmed while it waited for its turn; see
    ``pomogator.bot.erasures``) is not handled. Its sender is told so, not left to wait for an answer that never comes;
    sent again, it is handled as a new person's.
    """

    def __init__(
        self, users: UserService, erasures: ErasureMarks, *, premium_on_sale: bool, defer: bool = False
    ) -> None:
        self.users = users
        self.defer = defer
        self.premium_on_sale = premium_on_sale
        self.erasures = erasures

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        flag = get_flag(data, "account", default=True)
        if user is None or user.is_bot or flag is False:
            return await handler(event, data)
        update: Update | None = data.get("event_update")
        if (
            isinstance(event, Message)
            and update is not None
            and await self.erasures.erased_after(event.chat.id, update.update_id)
        ):
            await event.answer(texts.DELETE_ME_EARLIER_MESSAGE)
            return None
        person = Person(
            telegram_id=user.id,
            first_name=user.first_name,
            last_name=user.last_name or "",
            username=user.username,
            language=user.language_code,
        )
        if flag == SENDER and self.defer:
            data["sender"] = person
            return await handler(event, data)
        account = await self.users.touch(person)
        data["sender" if flag == SENDER else "account"] = account
        chat: Chat | None = data.get("event_chat")
        if chat is not None:
            await tell_if_model_reset(data["bot"], chat.id, account, premium_on_sale=self.premium_on_sale)
        return await handler(event, data)
