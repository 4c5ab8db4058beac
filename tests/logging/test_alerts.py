"""Admin alerts through the Telegram Bot API (the fake server), rate-limited per kind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from loguru import logger

from pomogator.config import Settings
from pomogator.errors import LLMAccountProblem, PaymentNotVerified
from pomogator.logs import alerts
from pomogator.logs.alerts import AlertPolicy, AlertSink
from tests.fakes.telegram_server import FakeTelegram
from tests.logging.conftest import API_KEY, BOT_TOKEN, db_sink, logging_to_database, stored

ADMINS = (111, 222)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def entry_point_logging(stderr_text: Callable[[], str]) -> None:
    """Every test runs with logging set up as the bot process's entry point does."""


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=BOT_TOKEN) as fake:
        for admin in ADMINS:
            fake.add_chat(admin)
        yield fake


@pytest.fixture
def alert_settings(log_settings: Settings, telegram: FakeTelegram) -> Settings:
    return log_settings.model_copy(update={"telegram_api_url": telegram.base_url, "admin_ids": "111, 222"})


async def delivered(sink: AlertSink | None) -> AlertSink:
    """Wait for alerts in flight, return the sink."""
    assert sink is not None
    await asyncio.gather(*sink._tasks)
    return sink


def texts(telegram: FakeTelegram, admin: int = ADMINS[0]) -> list[str]:
    return telegram.sent_texts(admin)


async def test_one_alert_per_kind_per_cooldown(
    alert_settings: Settings, telegram: FakeTelegram, stderr_text: Callable[[], str]
) -> None:
    clock = Clock()
    policy = AlertPolicy(cooldown=300.0, clock=clock)
    async with logging_to_database(alert_settings, alert_policy=policy) as sinks:
        alerts.notify(alerts.LLM_ACCOUNT, f"OpenRouter answered 402 for key {API_KEY}")
        await delivered(sinks.alerts)
        alerts.notify(alerts.LLM_ACCOUNT, "OpenRouter answered 402 again")
        alerts.notify(alerts.LLM_ACCOUNT, "and again")
        alerts.notify(alerts.PAYMENT, "Payment 2d-4b does not match the API")
        await delivered(sinks.alerts)
        for admin in ADMINS:
            assert len(texts(telegram, admin)) == 2
        first, payment = texts(telegram)
        assert first == "⚠️ Pomogator (bot): llm_account\nOpenRouter answered 402 for key ***"
        assert payment == "⚠️ Pomogator (bot): payment\nPayment 2d-4b does not match the API"

        clock.now += 301
        alerts.notify(alerts.LLM_ACCOUNT, "still 402")
        await delivered(sinks.alerts)
        assert texts(telegram)[-1] == (
            "⚠️ Pomogator (bot): llm_account\nstill 402\n(+2 more of this kind held back since the previous alert)"
        )
        assert len(texts(telegram)) == 3

        # Alerts are ordinary records too.
        assert await db_sink(sinks).flush()
        stored_alerts = [row for row in await stored() if row["context"].get("alert")]
    assert len(stored_alerts) == 5
    assert stored_alerts[0]["level"] == "ERROR"
    assert stored_alerts[0]["logger"] == __name__


async def test_an_error_spike_raises_one_alert(alert_settings: Settings, telegram: FakeTelegram) -> None:
    clock = Clock()
    policy = AlertPolicy(cooldown=300.0, spike_threshold=5, spike_window=60.0, clock=clock)
    async with logging_to_database(alert_settings, alert_policy=policy) as sinks:
        for number in range(4):
            logger.error("request {} failed", number)
            clock.now += 20  # spread out: never 5 within a minute
        await delivered(sinks.alerts)
        assert texts(telegram) == []

        for number in range(12):
            logger.error("request {} failed", number)
        await delivered(sinks.alerts)
        (spike,) = texts(telegram)
        assert spike.startswith("⚠️ Pomogator (bot): errors\n5 errors within 60 s. Latest: request")

        clock.now += 301
        for number in range(5):
            logger.error("request {} failed", number)
        await delivered(sinks.alerts)
        assert len(texts(telegram)) == 2
        assert "held back" in texts(telegram)[-1]


async def test_exceptions_that_need_a_person_alert_by_themselves(
    alert_settings: Settings, telegram: FakeTelegram
) -> None:
    async with logging_to_database(alert_settings) as sinks:
        logger.opt(exception=LLMAccountProblem("Insufficient credits")).error("chat failed")
        logger.opt(exception=PaymentNotVerified("amount differs")).warning("webhook rejected")
        await delivered(sinks.alerts)
    assert texts(telegram) == [
        "⚠️ Pomogator (bot): llm_account\nchat failed\nLLMAccountProblem: Insufficient credits",
        "⚠️ Pomogator (bot): payment\nwebhook rejected\nPaymentNotVerified: amount differs",
    ]


async def test_alerts_from_a_worker_thread(alert_settings: Settings, telegram: FakeTelegram) -> None:
    async with logging_to_database(alert_settings) as sinks:
        await asyncio.to_thread(alerts.notify, alerts.PAYMENT, "verification failed in the SDK thread")
        await asyncio.sleep(0.05)
        await delivered(sinks.alerts)
    assert texts(telegram) == ["⚠️ Pomogator (bot): payment\nverification failed in the SDK thread"]


async def test_an_unreachable_admin_does_not_loop_or_raise(
    alert_settings: Settings, telegram: FakeTelegram, stderr_text: Callable[[], str]
) -> None:
    settings = alert_settings.model_copy(update={"admin_ids": "999"})
    async with logging_to_database(settings) as sinks:
        alerts.notify(alerts.LLM_ACCOUNT, "402")
        await delivered(sinks.alerts)
        assert await db_sink(sinks).flush()
    assert "Telegram notice to 999 not delivered: Bad Request: chat not found" in stderr_text()


async def test_a_notice_that_failed_is_filed_under_its_recipient_and_names_no_one_else(
    alert_settings: Settings, telegram: FakeTelegram
) -> None:
    # Raised while person 43's message was handled: the record is about the admin it failed to reach, and must not
    # keep 43's id where erasing 43 would not find it.
    settings = alert_settings.model_copy(update={"admin_ids": "999"})
    async with logging_to_database(settings) as sinks:
        with logger.contextualize(user_id=43, chat_id=43, update_id=700):
            alerts.notify(alerts.LLM_ACCOUNT, "402")
            await delivered(sinks.alerts)
        assert await db_sink(sinks).flush()
        rows = await stored()
    (failed,) = [row for row in rows if "not delivered" in row["message"]]
    assert failed["telegram_id"] == 999
    assert 43 not in failed["context"].values()


@pytest.mark.parametrize("overrides", [{"bot_token": None}, {"admin_ids": ""}])
async def test_no_alerts_without_a_bot_token_or_admins(log_settings: Settings, overrides: dict[str, object]) -> None:
    settings = log_settings.model_copy(update=overrides)
    async with logging_to_database(settings) as sinks:
        assert sinks.alerts is None
        alerts.notify(alerts.LLM_ACCOUNT, "402")
        assert await db_sink(sinks).flush()
        (row,) = await stored()
    assert row["context"] == {"alert": "llm_account"}
