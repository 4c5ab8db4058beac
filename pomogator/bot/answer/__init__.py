"""Answering a message: stream the model's reply into Telegram (drafts or edits), then send it formatted."""

from pomogator.bot.answer.answerer import Answerer
from pomogator.bot.answer.stops import StopRegistry

__all__ = ["Answerer", "StopRegistry"]
