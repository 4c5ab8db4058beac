"""Building the Bot and the Dispatcher; used by polling here and by a webhook frontend alike.

The order in which an update meets the policy (after aiogram's own error and user-context middlewares):

1. ``UpdateTracker`` — counts updates in progress, so a shutdown lets them finish;
2. ``LogContextMiddleware`` — log records carry update, user and chat ids;
3. ``PrivateChatsOnly`` — in a group: one notice per chat, another for whoever addresses the bot, nothing else;
4. ``Gatherer.arrivals`` — the later parts of an album or of a split long text join the first one and stop here;
5. ``FloodMiddleware`` — over N messages a minute: one notice, then ignored (decided on arrival);
6. ``ChatOrderMiddleware`` — messages of a chat are handled one at a time, in arrival order (``/stop`` excepted: it
   stops the answer the others wait behind);
7. ``Gatherer.completion`` — in its turn, the first part waits for the rest and goes on as one request;
8. ``ErrorMiddleware`` — domain errors become friendly messages, in the chat's turn;
9. aiogram's FSM middleware — the conversation state is read in the chat's turn, too.

Then per event: callback queries are answered exactly once (``CallbackAnswerMiddleware``), a message sent before a
pending form's prompt does not see the form (``EarlierMessagesMiddleware``), a text that a handler other than the
message path takes can no longer become a forward's comment (``CommentGuard``), a pending form ends when the user turns
to something else (``FormMiddleware``), and handlers get ``account`` (``AccountMiddleware``;
plain text for the model gets ``sender``, on PostgreSQL touched in the round trip that takes the request).
Handlers receive ``services``, ``settings``, ``catalog``, ``users``, ``chat`` (the ChatService), ``answerer``,
``stops`` and ``edit_notices`` from the dispatcher's workflow data.
"""

from __future__ import annotations

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.base import BaseStorage

from pomogator.bot.answer import Answerer, StopRegistry
from pomogator.bot.comments import CommentGuard
from pomogator.bot.erasures import ErasureMarks, MemoryErasureMarks
from pomogator.bot.flood_wait import RetryAfterMiddleware
from pomogator.bot.fsm_memory import SparseMemoryStorage
from pomogator.bot.handlers import get_routers
from pomogator.bot.handlers.fallback import EditNotices
from pomogator.bot.middlewares import (
    AccountMiddleware,
    CallbackAnswerMiddleware,
    ChatLocks,
    ChatOrderMiddleware,
    ErrorMiddleware,
    FloodGuard,
    FloodMiddleware,
    Gatherer,
    LogContextMiddleware,
    MemoryChatLocks,
    PrivateChatsOnly,
    UpdateTracker,
)
from pomogator.bot.middlewares.forms import EarlierMessagesMiddleware, FormMiddleware
from pomogator.bot.middlewares.private_only import GroupNoticeClaim
from pomogator.bot.session import JsonBodySession
from pomogator.config import Settings
from pomogator.container import Services
from pomogator.tls import client_ssl

# Bot API calls one process may have in flight at once. aiogram's default, 100, made a saturated bot's calls wait for a
# free connection: a call's time includes the event loop's lag then, so more are open than the rate alone suggests
# (at ~300 answers/s the wait added "typing…" and drafts to answers that needed neither: 8-20 % more CPU per answer).
BOT_API_CONNECTIONS = 400


def create_bot(settings: Settings) -> Bot:
    """A Bot talking to ``POMOGATOR_TELEGRAM_API_URL`` (api.telegram.org or a local Bot API server)."""
    settings.require("bot_token")
    assert settings.bot_token is not None
    # TLS as the model's client verifies it (tls.py), instead of a context of certifi's bundle of its own (~0.6 MiB).
    session = JsonBodySession(
        api=TelegramAPIServer.from_base(settings.telegram_api_url), limit=BOT_API_CONNECTIONS, ssl=client_ssl()
    )
    session.middleware(RetryAfterMiddleware())
    return Bot(
        settings.bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )


def create_dispatcher(
    services: Services,
    *,
    chat_locks: ChatLocks | None = None,
    storage: BaseStorage | None = None,
    stops: StopRegistry | None = None,
    claim_group_notice: GroupNoticeClaim | None = None,
    erasures: ErasureMarks | None = None,
) -> Dispatcher:
    """The dispatcher with every router and middleware; ``dispatcher["tracker"]`` is its UpdateTracker. Each one has
    routers of its own: a process may build several.

    ``chat_locks``, ``storage``, ``stops`` and ``erasures`` default to in-process ones; several bot instances need
    shared ones (``pomogator.bot.shared.open_shared_state``), and ``claim_group_notice`` to tell a group only once
    among them.
    """
    settings = services.settings
    stops = stops if stops is not None else StopRegistry()
    erasures = erasures if erasures is not None else MemoryErasureMarks()
    tracker = UpdateTracker()
    dispatcher = Dispatcher(
        storage=storage if storage is not None else SparseMemoryStorage(),
        services=services,
        settings=settings,
        catalog=services.catalog,
        users=services.users,
        chat=services.chat,
        answerer=Answerer(services.chat, stops, services.users, premium_on_sale=settings.billing_configured),
        stops=stops,
        erasures=erasures,
        edit_notices=EditNotices(),
        tracker=tracker,
    )
    outer = dispatcher.update.outer_middleware
    # The FSM middleware is moved after the per-chat queue, so a message sees the state its predecessors left.
    outer.unregister(dispatcher.fsm)
    outer.register(tracker)
    outer.register(LogContextMiddleware())
    outer.register(PrivateChatsOnly(claim_group_notice))
    gatherer = Gatherer(settings.gather_window_seconds)
    outer.register(gatherer.arrivals)
    outer.register(FloodMiddleware(FloodGuard(settings.flood_messages_per_minute)))
    outer.register(ChatOrderMiddleware(chat_locks if chat_locks is not None else MemoryChatLocks()))
    outer.register(gatherer.completion)
    outer.register(ErrorMiddleware(services.catalog, settings))
    outer.register(dispatcher.fsm)

    dispatcher.callback_query.outer_middleware.register(CallbackAnswerMiddleware())
    dispatcher.message.outer_middleware.register(EarlierMessagesMiddleware())
    dispatcher.message.middleware.register(CommentGuard())
    forms = FormMiddleware()
    dispatcher.message.middleware.register(forms)
    dispatcher.callback_query.middleware.register(forms)
    accounts = AccountMiddleware(
        services.users,
        erasures,
        defer=services.chat.opens_in_one_trip,
        premium_on_sale=settings.billing_configured,
    )
    dispatcher.message.middleware.register(accounts)
    dispatcher.callback_query.middleware.register(accounts)

    dispatcher.include_routers(*get_routers())
    return dispatcher
