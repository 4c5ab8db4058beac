"""The usage report: requests, tokens and cost from ``llm_requests``, per model and per user, over a period."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from pomogator.services.usage import UsageLine, usage_report
from pomogator.store.engine import open_database
from pomogator.store.tables import LLMRequest
from pomogator.timeutil import utcnow

ANN = 7001
BOB = 7002
CAT = 7003
NOW = utcnow()


def request(
    who: int | None, model: str, cost: str | None, *, ago: timedelta = timedelta(hours=1), stopped: bool = False
) -> LLMRequest:
    return LLMRequest(
        telegram_id=who,
        model=model,
        prompt_tokens=100,
        completion_tokens=10,
        cost=None if cost is None else Decimal(cost),
        status="stopped" if stopped else "ok",
        created_at=NOW - ago,
    )


@pytest.fixture
async def stored(db_url: str) -> AsyncIterator[None]:
    async with open_database(db_url, migrate=True):
        await LLMRequest.insert(
            request(ANN, "big/model", "0.01230000"),
            request(ANN, "big/model", "0.00000001", stopped=True),
            request(ANN, "small/model", "0.00010000"),
            request(BOB, "small/model", "0.00020000"),
            request(BOB, "small/model", None),  # OpenRouter reported no cost
            request(None, "big/model", "0.00500000"),  # the terminal chat
            request(CAT, "big/model", "1.00000000", ago=timedelta(days=8)),  # before the period
            request(CAT, "big/model", "2.00000000", ago=timedelta(hours=-1)),  # after it
        )
        yield


def totals(line: UsageLine) -> tuple[object, ...]:
    return (line.key, line.requests, line.stopped, line.prompt_tokens, line.completion_tokens, line.cost, line.unpriced)


def week() -> tuple[datetime, datetime]:
    return NOW - timedelta(days=7), NOW


@pytest.mark.usefixtures("stored")
async def test_everyones_requests_in_the_period_per_model_and_per_user() -> None:
    report = await usage_report(*week())
    assert totals(report.total) == (None, 6, 1, 600, 60, Decimal("0.01760001"), 1)
    assert [totals(line) for line in report.models] == [
        ("big/model", 3, 1, 300, 30, Decimal("0.01730001"), 0),
        ("small/model", 3, 0, 300, 30, Decimal("0.00030000"), 1),
    ]
    # The costliest first; the terminal chat's requests are under no user.
    assert [totals(line) for line in report.users] == [
        (ANN, 3, 1, 300, 30, Decimal("0.01240001"), 0),
        (None, 1, 0, 100, 10, Decimal("0.00500000"), 0),
        (BOB, 2, 0, 200, 20, Decimal("0.00020000"), 1),
    ]


@pytest.mark.usefixtures("stored")
async def test_the_user_list_is_cut_to_the_costliest() -> None:
    report = await usage_report(*week(), top=2)
    assert [line.key for line in report.users] == [ANN, None]
    assert report.total.requests == 6


@pytest.mark.usefixtures("stored")
async def test_one_users_report() -> None:
    report = await usage_report(*week(), telegram_id=BOB)
    assert totals(report.total) == (None, 2, 0, 200, 20, Decimal("0.00020000"), 1)
    assert [totals(line) for line in report.models] == [("small/model", 2, 0, 200, 20, Decimal("0.00020000"), 1)]
    assert report.users == []


@pytest.mark.usefixtures("stored")
async def test_a_period_without_requests() -> None:
    report = await usage_report(NOW - timedelta(days=30), NOW - timedelta(days=20))
    assert totals(report.total) == (None, 0, 0, 0, 0, Decimal("0E-8"), 0)
    assert report.models == [] and report.users == []


@pytest.mark.usefixtures("stored")
async def test_a_period_is_read_through_the_index_on_its_time() -> None:
    # The table gains a row per answer: a week's report must not read every row ever stored.
    period = "FROM llm_requests WHERE created_at >= {} AND created_at < {}"
    engine = LLMRequest._meta.db
    async with engine.transaction():
        if engine.engine_type == "postgres":
            await LLMRequest.raw("SET LOCAL enable_seqscan = off")  # a few rows would be scanned otherwise
            plan = await LLMRequest.raw(f"EXPLAIN SELECT COUNT(*) {period}", *week())
        else:
            plan = await LLMRequest.raw(f"EXPLAIN QUERY PLAN SELECT COUNT(*) {period}", *week())
    assert "llm_requests_created_at" in str(plan)
