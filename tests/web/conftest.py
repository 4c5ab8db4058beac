"""Fixtures for the web app: the fakes, services wired to them, and the app served by uvicorn in the test loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from pomogator.container import Services, build_services
from pomogator.web.app import create_app
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.yookassa_server import FakeYooKassa
from tests.web.support import add_user, billing_settings, serve_in_loop

AppFactory = Callable[..., AbstractAsyncContextManager[tuple[str, Services]]]


@pytest.fixture
def web_app(db_url: str, kassa: FakeYooKassa, tg: FakeTelegram) -> AppFactory:
    """``async with web_app(**settings) as (url, services)``: the app on a free port, sharing ``services``."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[tuple[str, Services]]:
        settings = billing_settings(db_url, kassa, tg, **overrides)
        async with build_services(settings, migrate=True) as services:
            await add_user(services, tg)
            async with serve_in_loop(create_app(settings, services=services)) as url:
                yield url, services

    return start
