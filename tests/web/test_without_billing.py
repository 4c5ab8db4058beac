"""The web app of a deployment without a YooKassa shop: payments are off, everything else runs."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import httpx
import pytest
from loguru import logger

from pomogator import jobs as jobs_module
from pomogator.container import Services
from pomogator.store.tables import DailyUsage
from tests.web.conftest import AppFactory
from tests.web.support import WEBHOOK

ERASED = 778
PAYMENTS_OFF = "WARNING YooKassa is not configured: payments are off"


def yesterday(services: Services) -> str:
    return (date.fromisoformat(services.quota.today()) - timedelta(days=1)).isoformat()


@pytest.mark.parametrize("billing", [False, True], ids=["no-shop", "shop"])
async def test_without_yookassa_payments_are_off_and_housekeeping_runs(
    web_app: AppFactory, monkeypatch: pytest.MonkeyPatch, billing: bool
) -> None:
    monkeypatch.setattr(jobs_module, "HOUSEKEEPING_SECONDS", 0.05)
    checks: list[Services] = []

    async def check_waiting(services: Services) -> None:
        checks.append(services)

    monkeypatch.setattr(jobs_module, "check_waiting_payments", check_waiting)
    shop = {} if billing else {"yookassa_shop_id": None, "yookassa_secret_key": None}
    lines: list[str] = []
    sink = logger.add(lines.append, format="{level} {message}", level="INFO")
    try:
        async with web_app(payment_check_interval_seconds=0.01, **shop) as (url, services):
            assert services.settings.billing_configured is billing
            await DailyUsage.insert(DailyUsage(telegram_id=ERASED, model="m", day=yesterday(services), used=5))
            async with httpx.AsyncClient() as client:
                assert (await client.get(url + "/healthz")).status_code == 200
                notification = await client.post(url + WEBHOOK, json={"type": "notification"})
            for _ in range(500):
                if not await DailyUsage.count().where(DailyUsage.telegram_id == ERASED):
                    break
                await asyncio.sleep(0.01)
            # The erased person's count is forgotten whether or not payments are taken.
            assert await DailyUsage.count().where(DailyUsage.telegram_id == ERASED) == 0
    finally:
        logger.remove(sink)
    if billing:
        assert notification.status_code == 400  # served: a body that is not a notification
        assert checks and PAYMENTS_OFF + "\n" not in lines
    else:
        assert notification.status_code == 404
        assert checks == []
        assert lines.count(PAYMENTS_OFF + "\n") == 1
