"""The composition root: one place that opens the database and HTTP clients and builds the services."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pomogator.config import Settings
from pomogator.errors import ConfigError
from pomogator.llm.catalog import Catalog, load_catalog
from pomogator.llm.client import LLMClient
from pomogator.services.chat import ChatService
from pomogator.services.quota import QuotaService
from pomogator.services.subscriptions import SubscriptionService
from pomogator.services.users import UserService
from pomogator.store.engine import Database


@dataclass
class Services:
    settings: Settings
    database: Database
    catalog: Catalog
    users: UserService
    quota: QuotaService
    subscriptions: SubscriptionService
    llm: LLMClient | None = None
    _chat: ChatService | None = field(default=None, repr=False)

    @property
    def chat(self) -> ChatService:
        """The chat service; raises ConfigError when no OpenRouter key is configured."""
        if self._chat is None:
            raise ConfigError("POMOGATOR_OPENROUTER_API_KEY is not set.")
        return self._chat


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


@contextlib.asynccontextmanager
async def build_services(settings: Settings, *, migrate: bool | None = None) -> AsyncIterator[Services]:
    """Open everything a process needs and close it on exit.

    On SQLite pending migrations are applied first (under a file lock) unless ``migrate=False``.
    """
    catalog = load_catalog(settings.models_file)
    database = Database(settings.database_url)
    await database.start(migrate=migrate)
    llm = make_llm_client(settings)
    try:
        quota = QuotaService(settings.tz)
        subscriptions = SubscriptionService()
        users = UserService(database, catalog, subscriptions, quota, settings.role_max_chars)
        chat = ChatService(database, llm, quota, catalog) if llm is not None else None
        yield Services(
            settings=settings,
            database=database,
            catalog=catalog,
            users=users,
            quota=quota,
            subscriptions=subscriptions,
            llm=llm,
            _chat=chat,
        )
    finally:
        if llm is not None:
            await llm.close()
        await database.close()
