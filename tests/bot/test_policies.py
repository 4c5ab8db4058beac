"""Throttling, flood protection, per-chat ordering, stop registry and texts, without processes."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import TelegramNetworkError
from aiogram.filters import Command
from aiogram.methods import SendMessage, TelegramMethod
from aiogram.types import Message, Update

from pomogator.bot import texts
from pomogator.bot.answer.stops import StopRegistry
from pomogator.bot.answer.throttle import Throttle
from pomogator.bot.middlewares import ChatOrderMiddleware, FloodGuard, FloodMiddleware, MemoryChatLocks, Verdict
from pomogator.errors import (
    LLMAccountProblem,
    LLMBadRequest,
    LLMModerated,
    LLMRateLimited,
    LLMTimeout,
    LLMUnavailable,
    MessageTooLong,
    PremiumRequired,
    QuotaExceeded,
    RoleTooLong,
)
from pomogator.llm.catalog import load_catalog
from pomogator.services.users import Account, ModelReset


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_allows_one_action_per_interval_and_honours_flood_waits() -> None:
    clock = Clock()
    throttle = Throttle(1.0, clock)
    assert throttle.delay() == 0
    throttle.mark()
    assert throttle.delay() == pytest.approx(1.0)
    clock.now += 0.4
    assert throttle.delay() == pytest.approx(0.6)
    clock.now += 0.6
    assert throttle.delay() == 0
    throttle.defer(5)
    clock.now += 1
    assert throttle.delay() == pytest.approx(4.0)
    # A flood wait is never shortened by a later, shorter interval.
    throttle.mark()
    assert throttle.delay() == pytest.approx(4.0)


def test_flood_guard_warns_once_then_ignores_until_the_window_frees_up() -> None:
    clock = Clock()
    guard = FloodGuard(limit=20, window=60, clock=clock)
    verdicts = []
    for _ in range(25):
        verdicts.append(guard.check(7))
        clock.now += 0.1
    assert verdicts[:20] == [Verdict.allow] * 20
    assert verdicts[20] is Verdict.warn
    assert verdicts[21:] == [Verdict.ignore] * 4
    assert guard.check(8) is Verdict.allow  # other users are not affected
    clock.now += 60
    assert guard.check(7) is Verdict.allow
    for _ in range(19):
        guard.check(7)
    assert guard.check(7) is Verdict.warn  # a new window warns again


def test_flood_guard_forgets_idle_users() -> None:
    clock = Clock()
    guard = FloodGuard(limit=5, window=60, clock=clock)
    for user in range(500):
        guard.check(user)
    clock.now += 61
    for user in range(500, 1000):
        guard.check(user)
    assert len(guard) <= 500


class NoticeRecorder(AiohttpSession):
    """No Telegram: the texts the bot sends are noted, then the call fails."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    async def make_request(self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None) -> Any:  # noqa: ASYNC109
        if isinstance(method, SendMessage):
            self.sent.append(method.text)
        raise TelegramNetworkError(method=method, message="offline")


async def test_stop_passes_the_flood_guard_uncounted() -> None:
    handled: list[str] = []
    router = Router()

    @router.message(Command("stop"))
    async def on_stop(message: Message) -> None:
        handled.append("/stop")

    @router.message(F.text)
    async def on_text(message: Message) -> None:
        handled.append(message.text or "")

    dispatcher = Dispatcher()
    dispatcher.update.outer_middleware.register(FloodMiddleware(FloodGuard(3)))
    dispatcher.update.outer_middleware.register(ChatOrderMiddleware(MemoryChatLocks()))
    dispatcher.include_router(router)
    session = NoticeRecorder()
    bot = Bot("42:TEST", session=session)
    ids = itertools.count(1)

    async def send(text: str) -> None:
        n = next(ids)
        entities = [{"type": "bot_command", "offset": 0, "length": len(text)}] if text.startswith("/") else None
        message = {
            "message_id": n,
            "date": int(time.time()),
            "chat": {"id": 5, "type": "private"},
            "from": {"id": 5, "is_bot": False, "first_name": "Test"},
            "text": text,
            "entities": entities,
        }
        await dispatcher.feed_update(bot, Update.model_validate({"update_id": n, "message": message}))

    try:
        for text in ("one", "two", "/stop", "three", "four", "five", "/stop"):
            await send(text)
        # /stop took no message's place: "three" went through; "four" got the notice, "five" nothing.
        assert handled == ["one", "two", "/stop", "three", "/stop"]
        assert session.sent == [texts.FLOOD]
        # /stop sent nonstop is held back by a limit of its own.
        for _ in range(3):
            await send("/stop")
        assert handled.count("/stop") == 3
        assert session.sent == [texts.FLOOD, texts.FLOOD]
    finally:
        await bot.session.close()


async def test_chat_locks_are_fifo_per_chat_and_cleaned_up() -> None:
    locks = MemoryChatLocks()
    order: list[int] = []
    running: dict[int, int] = {1: 0, 2: 0}
    overlap: list[bool] = []

    async def handle(chat: int, n: int) -> None:
        async with locks.hold(chat):
            running[chat] += 1
            overlap.append(running[chat] > 1)
            await asyncio.sleep(0.001 * (10 - n))
            order.append(chat * 100 + n)
            running[chat] -= 1

    tasks = [asyncio.create_task(handle(1 + n % 2, n)) for n in range(10)]
    await asyncio.gather(*tasks)
    assert [o for o in order if o < 200] == [100, 102, 104, 106, 108]
    assert [o for o in order if o >= 200] == [201, 203, 205, 207, 209]
    assert not any(overlap)
    assert len(locks) == 0


async def test_a_cancelled_waiter_leaves_no_lock_behind() -> None:
    locks = MemoryChatLocks()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold(5):
            await release.wait()

    async def waiter() -> None:
        async with locks.hold(5):
            pass

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    second = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    release.set()
    await first
    assert len(locks) == 0


def test_stop_registry_stops_only_streaming_answers() -> None:
    stops = StopRegistry()
    event = stops.open(1, 42)
    assert not stops.stop(1, 43)
    assert not stops.stop(2, 42)
    assert stops.stop(1, 42) and event.is_set()
    assert not stops.stop(1, 42)
    stops.close(1, 42)
    assert len(stops) == 0
    assert not stops.stop(1, 42)


def test_descriptions_fit_telegram_limits_even_with_a_long_contact() -> None:
    for support in ("@pomogator_support", "support@example.com, +7 900 000-00-00", "x" * 600):
        assert len(texts.bot_description(support)) <= texts.DESCRIPTION_LIMIT
        assert len(texts.bot_short_description(support)) <= texts.SHORT_DESCRIPTION_LIMIT
    assert "@pomogator_support" in texts.bot_short_description("@pomogator_support")


def test_each_model_failure_has_its_own_message_and_none_mentions_payment() -> None:
    catalog = load_catalog()
    tz = ZoneInfo("Europe/Moscow")
    messages = {
        kind: texts.error(kind("detail"), catalog, tz, "@support", premium_on_sale=True)
        for kind in (LLMUnavailable, LLMRateLimited, LLMTimeout, LLMModerated, LLMBadRequest)
    }
    assert len(set(messages.values())) == len(messages)
    # Our account failing fails every model: no other model to try, unlike one model's outage.
    account = texts.error(LLMAccountProblem("402 credits"), catalog, tz, "@s", premium_on_sale=True)
    assert account == texts.LLM_ACCOUNT_PROBLEM and "/model" in messages[LLMUnavailable] and "/model" not in account
    messages[LLMAccountProblem] = account
    for message in messages.values():
        assert "оплат" not in message.lower() and "detail" not in message


def test_quota_and_role_refusals_say_what_and_when() -> None:
    catalog = load_catalog()
    tz = ZoneInfo("Europe/Moscow")
    exc = QuotaExceeded(catalog.default.id, 20, datetime(2025, 3, 1, 21, 0, tzinfo=UTC))
    text = texts.error(exc, catalog, tz, "@s", premium_on_sale=True)
    assert catalog.default.title in text and "20 запросов" in text
    assert "02.03.2025 00:00" in text and "/billing" in text
    assert "2500" in texts.error(RoleTooLong(2500, 2000), catalog, tz, "@s", premium_on_sale=True)


def test_refusals_premium_would_lift_point_to_billing_only_while_it_is_for_sale() -> None:
    catalog = load_catalog()
    tz = ZoneInfo("Europe/Moscow")
    locked = next(m for m in catalog.models if m.premium_only)
    quota = QuotaExceeded(catalog.default.id, 20, datetime(2025, 3, 1, 21, 0, tzinfo=UTC))
    for exc in (quota, PremiumRequired(locked.id)):
        assert "/billing" in texts.error(exc, catalog, tz, "@s", premium_on_sale=True)
        assert "/billing" not in texts.error(exc, catalog, tz, "@s", premium_on_sale=False)
    assert texts.error(quota, catalog, tz, "@s", premium_on_sale=False).endswith("/model.")
    assert "скоро" in texts.error(PremiumRequired(locked.id), catalog, tz, "@s", premium_on_sale=False)
    ended = Account(
        telegram_id=1,
        first_name="Ann",
        username=None,
        model=catalog.default,
        role=None,
        email=None,
        premium_until=None,
        created_at=datetime(2025, 3, 1, tzinfo=UTC),
        model_reset=ModelReset.PREMIUM_ENDED,
        reset_from=locked,
    )
    assert "/billing" in texts.model_reset(ended, premium_on_sale=True)
    assert "/billing" not in texts.model_reset(ended, premium_on_sale=False)


def test_a_message_too_long_names_the_model_and_what_helps() -> None:
    catalog = load_catalog()
    too_long = MessageTooLong(catalog.default.id, 70_000, 61_000)
    text = texts.error(too_long, catalog, ZoneInfo("Europe/Moscow"), "@s", premium_on_sale=True)
    assert catalog.default.title in text and "/model" in text
    assert "/delete_context" not in text and text != texts.LLM_BAD_REQUEST
