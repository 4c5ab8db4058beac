"""Errors are translated once, here: domain errors become friendly messages, the rest is logged with context.

Placed inside the per-chat queue, so a refusal is sent in its place among the chat's answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.exceptions import TelegramAPIError, TelegramForbiddenError, TelegramNetworkError, TelegramServerError
from aiogram.types import Chat, TelegramObject, Update, User
from loguru import logger

from pomogator.bot import texts
from pomogator.bot.answer.output import ChatGone, is_chat_gone
from pomogator.bot.flood_wait import FloodWaitTooLong
from pomogator.config import Settings
from pomogator.errors import (
    DatabaseUnavailable,
    FormUnavailable,
    LLMAccountProblem,
    LLMError,
    LLMModelGone,
    LLMRegionBlocked,
    PomogatorError,
)
from pomogator.llm.catalog import Catalog
from pomogator.logs import alerts
from pomogator.services.users import UserService
from pomogator.store.outage import outage_of


class ErrorMiddleware(BaseMiddleware):
    def __init__(self, catalog: Catalog, settings: Settings) -> None:
        self.catalog = catalog
        self.settings = settings

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        try:
            return await handler(event, data)
        except PomogatorError as exc:
            self._log_domain_error(exc)
            if isinstance(exc, DatabaseUnavailable) and not isinstance(exc, FormUnavailable):
                text = _database_unavailable(event)
            else:
                on_sale = self.settings.billing_configured
                premium = isinstance(exc, texts.NAMES_MODELS) and await _has_premium(data)
                text = texts.error(
                    exc,
                    self.catalog,
                    self.settings.tz,
                    self.settings.support_contact,
                    premium_on_sale=on_sale,
                    premium=premium,
                )
            await self._tell(data, text)
        except (ChatGone, TelegramForbiddenError) as exc:
            logger.info("Chat unavailable, nothing delivered: {}", exc)
        except FloodWaitTooLong as exc:
            logger.warning("Update given up on a Telegram flood limit: {}", exc.message)
            await self._tell(data, texts.FLOOD_LIMITED)
        except (TelegramNetworkError, TelegramServerError) as exc:
            # An outage of Telegram's, not a fault of ours: no traceback (the answer was given back).
            logger.error("Update given up, Telegram is unavailable ({}): {}", type(exc).__name__, exc.message)
            await self._tell(data, texts.TELEGRAM_UNAVAILABLE)
        except TelegramAPIError as exc:
            if is_chat_gone(exc):
                logger.info("Chat unavailable, nothing delivered: {}", exc.message)
            else:
                logger.exception("Telegram call failed while handling an update")
                await self._tell(data, texts.unexpected(self.settings.support_contact))
        except Exception as exc:
            outage = outage_of(exc)
            if outage is not None:
                self._log_domain_error(outage)
                await self._tell(data, _database_unavailable(event))
            else:
                logger.exception("Unexpected error while handling an update")
                await self._tell(data, texts.unexpected(self.settings.support_contact))
        return None

    @staticmethod
    def _log_domain_error(exc: PomogatorError) -> None:
        if isinstance(exc, LLMAccountProblem):
            alerts.notify(
                alerts.LLM_ACCOUNT,
                f"OpenRouter refused our account (key, credit, limits or privacy settings): {exc.detail}",
            )
        elif isinstance(exc, LLMModelGone):
            alerts.notify(alerts.MODEL_GONE, f"OpenRouter no longer serves a model of the catalog: {exc.detail}")
        elif isinstance(exc, LLMRegionBlocked):
            model = exc.model_id or "a model of the catalog"
            alerts.notify(
                alerts.MODEL_REGION,
                f"{model} is refused in the country the bot's requests come from; replace it in the catalog or "
                f"route the requests through another country (HTTPS_PROXY): {exc.detail}",
            )
        elif isinstance(exc, LLMError):
            logger.warning("Model request failed ({}): {}", type(exc).__name__, exc.detail)
        elif isinstance(exc, FormUnavailable):
            logger.warning("Form not opened, Redis is unavailable: {}", exc.detail)
        elif isinstance(exc, DatabaseUnavailable):
            logger.warning("Update not handled, the database is unavailable: {}", exc.detail)
        else:
            logger.info("Refused: {}", exc)

    @staticmethod
    async def _tell(data: dict[str, Any], text: str) -> None:
        chat: Chat | None = data.get("event_chat")
        bot: Bot | None = data.get("bot")
        if chat is None or bot is None:
            return
        try:
            await bot.send_message(chat.id, text)
        except TelegramAPIError as exc:
            logger.info("Error notice not delivered: {}", exc.message)


def _database_unavailable(event: TelegramObject) -> str:
    """A press has no message to send again: it is to be pressed again."""
    pressed = isinstance(event, Update) and event.callback_query is not None
    return texts.DATABASE_UNAVAILABLE_PRESS if pressed else texts.DATABASE_UNAVAILABLE


async def _has_premium(data: dict[str, Any]) -> bool:
    """Whether the person has premium, for a refusal that names models (the handler's account is not seen from
    here); read again only for those rare refusals. Unknown (the database is away, say): shown as to a free user."""
    users: UserService | None = data.get("users")
    user: User | None = data.get("event_from_user")
    if users is None or user is None:
        return False
    try:
        return (await users.get(user.id)).premium
    except Exception as exc:  # the refusal is sent all the same
        logger.info("Premium not read for a refusal, models shown as to a free user: {!r}", exc)
        return False
