"""Small helpers for replying to button presses on an earlier message."""

from __future__ import annotations

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message


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
