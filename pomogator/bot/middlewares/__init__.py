"""Cross-cutting policy of the bot, in the order an update meets it (see ``pomogator.bot.factory``)."""

from pomogator.bot.middlewares.account import AccountMiddleware
from pomogator.bot.middlewares.callback_answer import CallbackAnswerMiddleware, CallbackReply
from pomogator.bot.middlewares.chat_order import ChatLocks, ChatOrderMiddleware, MemoryChatLocks
from pomogator.bot.middlewares.errors import ErrorMiddleware
from pomogator.bot.middlewares.flood import FloodGuard, FloodMiddleware, Verdict
from pomogator.bot.middlewares.gather import Gatherer
from pomogator.bot.middlewares.log_context import LogContextMiddleware
from pomogator.bot.middlewares.private_only import PrivateChatsOnly
from pomogator.bot.middlewares.tracking import UpdateTracker

__all__ = [
    "AccountMiddleware",
    "CallbackAnswerMiddleware",
    "CallbackReply",
    "ChatLocks",
    "ChatOrderMiddleware",
    "ErrorMiddleware",
    "FloodGuard",
    "FloodMiddleware",
    "Gatherer",
    "LogContextMiddleware",
    "MemoryChatLocks",
    "PrivateChatsOnly",
    "UpdateTracker",
    "Verdict",
]
