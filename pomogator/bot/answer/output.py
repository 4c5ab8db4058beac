"""Telegram calls of one answer, with the failures an answer must survive turned into plain outcomes.

* HTML Telegram refuses ("can't parse entities", a link's URL it finds wrong): the text is sent again as plain text
  (``parse_mode=None``), so the user always gets it;
* "message is not modified": nothing to do; "message to edit not found": the caller sends a new message;
* a blocked bot or a deleted chat: ``ChatGone``, which ends the answer without touching other chats;
* 429 is waited out by the session middleware (``pomogator.bot.flood_wait``), except for drafts and chat
  actions, whose floods the renderer handles by simply sending the next, fresher update later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramServerError,
)
from aiogram.types import InlineKeyboardMarkup
from loguru import logger

from pomogator.services.formatting import html_to_text

T = TypeVar("T")

SEND_ATTEMPTS = 3
# What Telegram's refusals of a text's formatting say: its HTML, its entities, a link's address.
_FORMATTING_REFUSED = ("can't parse", "unsupported start tag", "entity", "entities", "url host", "wrong http url")
_CHAT_GONE = ("chat not found", "bot was blocked", "user is deactivated", "bot was kicked", "peer_id_invalid")


class ChatGone(Exception):
    """The chat cannot receive messages any more: the user blocked the bot or the chat was deleted."""


class DraftsUnavailable(Exception):
    """Telegram refused a draft in this chat; the answer continues with a message edited in place."""


def is_parse_error(exc: TelegramBadRequest) -> bool:
    message = exc.message.lower()
    return any(marker in message for marker in _FORMATTING_REFUSED)


def is_chat_gone(exc: TelegramAPIError) -> bool:
    return isinstance(exc, TelegramForbiddenError) or any(marker in exc.message.lower() for marker in _CHAT_GONE)


class ChatOutput:
    """Sends, edits, drafts and deletes messages in one chat."""

    def __init__(self, bot: Bot, chat_id: int) -> None:
        self.bot = bot
        self.chat_id = chat_id

    async def typing(self) -> None:
        """Show "typing…"; a failure only costs the indicator."""
        try:
            await self.bot.send_chat_action(self.chat_id, "typing")
        except TelegramAPIError as exc:
            if is_chat_gone(exc):
                raise ChatGone(exc.message) from None
            logger.debug("Typing action failed: {}", exc.message)

    async def send(self, html: str, markup: InlineKeyboardMarkup | None = None) -> int:
        """Send a message (as plain text if Telegram rejects the HTML); returns its id."""
        message = await self._html_or_plain(
            html,
            lambda text, mode: self._guard(
                partial(self.bot.send_message, self.chat_id, text, reply_markup=markup, **mode)
            ),
            "sending",
        )
        return message.message_id

    async def edit(self, message_id: int, html: str, markup: InlineKeyboardMarkup | None = None) -> bool:
        """Replace a message's text; False when the message no longer exists (the caller sends a new one)."""
        try:
            await self._html_or_plain(
                html,
                lambda text, mode: self._guard(
                    partial(
                        self.bot.edit_message_text,
                        text=text,
                        chat_id=self.chat_id,
                        message_id=message_id,
                        reply_markup=markup,
                        **mode,
                    )
                ),
                "editing",
            )
        except TelegramBadRequest as exc:
            reason = exc.message.lower()
            if "message is not modified" in reason:
                return True
            if "message to edit not found" in reason or "message can't be edited" in reason:
                return False
            raise
        return True

    async def draft(self, draft_id: int, html: str) -> None:
        """Show ``html`` as the chat's live draft, with Telegram's own stop button.

        Raises DraftsUnavailable when Telegram refuses drafts here, TelegramRetryAfter on a flood limit.
        """
        try:
            await self._html_or_plain(
                html,
                lambda text, mode: self._guard(
                    partial(
                        self.bot.send_message_draft,
                        self.chat_id,
                        draft_id,
                        text=text,
                        can_stop=True,
                        keep_on_stop=True,
                        **mode,
                    ),
                    attempts=1,
                ),
            )
        except (TelegramBadRequest, TelegramNotFound) as exc:
            raise DraftsUnavailable(exc.message) from None

    async def delete(self, message_id: int) -> None:
        """Delete a message if it is still there; failures are only logged."""
        try:
            await self.bot.delete_message(self.chat_id, message_id)
        except TelegramAPIError as exc:
            logger.debug("Could not delete message {}: {}", message_id, exc.message)

    @staticmethod
    async def _html_or_plain(
        html: str, call: Callable[[str, dict[str, None]], Awaitable[T]], doing: str | None = None
    ) -> T:
        """``call(text, mode)`` with ``html``, then with its plain text (``mode`` sets ``parse_mode=None``) if
        Telegram refuses its formatting; ``doing`` ("sending") names the call in the warning (None: a draft, soon
        replaced, is not worth one)."""
        try:
            return await call(html, {})
        except TelegramBadRequest as exc:
            if not is_parse_error(exc):
                raise
            if doing is not None:
                logger.warning("Telegram rejected answer HTML ({}); {} it as plain text", exc.message, doing)
        return await call(html_to_text(html), {"parse_mode": None})

    async def _guard(self, call: Callable[[], Awaitable[T]], attempts: int = SEND_ATTEMPTS) -> T:
        """Run a call, retrying network and server failures; a gone chat becomes ChatGone."""
        for attempt in range(1, attempts + 1):
            try:
                return await call()
            except (TelegramNetworkError, TelegramServerError) as exc:
                if attempt == attempts:
                    raise
                logger.warning("Telegram call failed ({}), retrying", exc.message)
                await asyncio.sleep(attempt)
            except TelegramAPIError as exc:
                if is_chat_gone(exc):
                    raise ChatGone(exc.message) from None
                raise
        raise AssertionError("unreachable")
