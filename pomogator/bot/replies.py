"""Small helpers for replying: to button presses on an earlier message, and notices about the account."""

from __future__ import annotations

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from loguru import logger

from pomogator.bot import texts
from pomogator.services.users import Account


def chat_id_of(query: CallbackQuery) -> int | None:
    """The chat of the message whose button was pressed (None for inline-mode messages)."""
    return query.message.chat.id if query.message is not None else None


async def replace_text(bot: Bot, query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
    """Show ``text`` in place of the pressed message; sends it anew when that message cannot be edited."""
    chat_id = chat_id_of(query)
    if chat_id is None:
        return
    if isinstance(query.message, Message):
        try:
            await query.message.edit_text(text, reply_markup=markup)
            return
        except TelegramBadRequest as exc:
            if "message is not modified" in exc.message:
                return
    await bot.send_message(chat_id, text, reply_markup=markup)


async def tell_if_model_reset(bot: Bot, chat_id: int, account: Account, *, premium_on_sale: bool) -> None:
    """Tell the person their model was reset to the default (and why), when ``touch`` just did that.
    ``premium_on_sale``: premium can be bought (payments are configured), so the notice points to /billing."""
    if not account.model_reset:
        return
    try:
        await bot.send_message(chat_id, texts.model_reset(account, premium_on_sale=premium_on_sale))
    except TelegramAPIError as exc:
        logger.info("Model reset notice not delivered: {}", exc.message)


def replied_text(message: Message) -> str | None:
    """What ``message`` replies to: the part the user quoted, else the replied-to message's text or caption.

    A message in another chat (``external_reply``) is only seen through its quote. None for no reply, or a reply
    to something without text (a sticker, a photo without a caption, a topic's first message).
    """
    if message.quote is not None:
        return message.quote.text
    replied = message.reply_to_message
    if replied is None:
        return None
    return replied.text or replied.caption
