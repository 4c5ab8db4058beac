"""The composition root: one place that opens the database and HTTP clients and builds the services."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pomogator.config import Settings
from pomogator.errors import ConfigError
from pomogator.llm.catalog import Catalog, load_catalog
from pomogator.llm.client import LLMClient
from pomogator.logs.lifecycle import database_logging
from pomogator.notify import TelegramNotifier
from pomogator.services.chat import ChatService
from pomogator.services.quota import QuotaService
from pomogator.services.reminders import ReminderService
from pomogator.services.subscriptions import SubscriptionService
from pomogator.services.users import UserService
from pomogator.store.engine import Database

if TYPE_CHECKING:
    from pomogator.services.billing import BillingService


@dataclass
class Services:
    settings: Settings
    database: Database
    catalog: Catalog
    users: UserService
    quota: QuotaService
    subscriptions: SubscriptionService
    llm: LLMClient | None = None
    """The OpenRouter client, once ``chat`` has been used."""
    _chat: ChatService | None = field(default=None, repr=False)
    # Plain Bot API sender for processes without aiogram (payment notices, reminders); None without a bot token.
    notifier: TelegramNotifier | None = None
    reminders: ReminderService | None = None
    _billing: BillingService | None = field(default=None, repr=False)

    @property
    def chat(self) -> ChatService:
        """The chat service, built on first use (the openai SDK is imported only then, so the web app and the admin
        commands never load it); raises ConfigError when no OpenRouter key is configured."""
        if self._chat is None:
            llm = make_llm_client(self.settings)
            if llm is None:
                raise ConfigError("POMOGATOR_OPENROUTER_API_KEY is not set.")
            self.llm = llm
            self._chat = ChatService(self.database, llm, self.quota, self.catalog)
        return self._chat

    @property
    def billing(self) -> BillingService:
        """The billing service, built on first use (the yookassa SDK is imported only then); raises ConfigError
        when the YooKassa shop id or secret key is not configured."""
        if self._billing is None:
            # The bot needs it only at a /billing press; its modules (~0.8 MiB) wait for that.
            from pomogator.billing.yookassa import YooKassaClient
            from pomogator.services.billing import BillingService

            kassa = YooKassaClient.from_settings(self.settings)
            self._billing = BillingService(
                self.database, kassa, self.users, self.subscriptions, self.notifier, self.settings
            )
        return self._billing


def make_llm_client(settings: Settings) -> LLMClient | None:
    if settings.openrouter_api_key is None or not settings.openrouter_api_key.get_secret_value():
        return None
    return LLMClient(
        base_url=settings.openrouter_base_url,
        api_key=settings.openrouter_api_key.get_secret_value(),
        timeout=settings.openrouter_timeout,
        max_retries=settings.openrouter_max_retries,
        app_url=settings.app_url,
        app_title=settings.app_title,
    )


def make_notifier(settings: Settings) -> TelegramNotifier | None:
    if settings.bot_token is None or not settings.bot_token.get_secret_value():
        return None
    return TelegramNotifier(settings.telegram_api_url, settings.bot_token.get_secret_value())


@contextlib.asynccontextmanager
async def build_services(settings: Settings, *, migrate: bool | None = None) -> AsyncIterator[Services]:
    """Open everything a process needs and close it on exit.

    On SQLite pending migrations are applied first (under a file lock) unless ``migrate=False``. A PostgreSQL
    database is migrated by ``pomogator db migrate`` alone: one that lacks migrations is a ConfigError here.
    """
    catalog = load_catalog(settings.models_file)
    database = Database(
        settings.database_url,
        pool_max=settings.database_pool_size,
        reconnect_wait=settings.database_reconnect_seconds,
    )
    await database.start(migrate=migrate)
    if not migrate and not (database.is_sqlite and migrate is None):
        try:
            await database.require_migrated()
        except BaseException:
            await database.close()
            raise
    notifier = make_notifier(settings)
    services: Services | None = None
    try:
        quota = QuotaService(settings.tz)
        subscriptions = SubscriptionService()
        users = UserService(database, catalog, subscriptions, quota, settings.role_max_chars)
        async with database_logging(settings, database):
            services = Services(
                settings=settings,
                database=database,
                catalog=catalog,
                users=users,
                quota=quota,
                subscriptions=subscriptions,
                notifier=notifier,
                reminders=ReminderService(
                    notifier,
                    settings.tz,
                    premium_on_sale=settings.billing_configured,
                    support=settings.support_contact,
                ),
            )
            try:
                yield services
            finally:
                # Inside the log sinks, so that a request that stays counted reaches the log table and the admins.
                await quota.aclose()
    finally:
        if notifier is not None:
            await notifier.close()
        if services is not None and services.llm is not None:
            await services.llm.close()
        await database.close()
