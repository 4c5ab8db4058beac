"""Premium subscriptions: grants stack, revoke ends them, expired ones do not count, refunds shorten them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from pomogator.container import Services
from pomogator.services.subscriptions import LATEST_END, PremiumTooLong
from pomogator.store.tables import Subscription
from pomogator.timeutil import as_utc

USER = 2002
# Generous bounds around "now": the assertions are about days, never about how fast the test runs.
SLACK = timedelta(minutes=5)


def now() -> datetime:
    return datetime.now(UTC)


async def add_subscription(telegram_id: int, starts: datetime, ends: datetime, payment_id: str | None = None) -> None:
    await Subscription.insert(
        Subscription(
            telegram_id=telegram_id,
            plan="month",
            starts_at=starts,
            ends_at=ends,
            payment_id=payment_id,
            created_at=starts,
        )
    )


async def test_no_subscription_means_no_premium(services: Services) -> None:
    assert await services.subscriptions.premium_until(USER) is None


async def test_grant_starts_now_without_premium(services: Services) -> None:
    before = now()
    ends = await services.subscriptions.grant(USER, 30)
    assert before + timedelta(days=30) <= ends <= now() + timedelta(days=30)
    assert await services.subscriptions.premium_until(USER) == ends


async def test_two_grants_stack(services: Services) -> None:
    subscriptions = services.subscriptions
    first = await subscriptions.grant(USER, 30, plan="month", payment_id="pay-1")
    second = await subscriptions.grant(USER, 365, plan="year", payment_id="pay-2")
    assert second == first + timedelta(days=365)
    assert await subscriptions.premium_until(USER) == second
    rows = await Subscription.select().where(Subscription.telegram_id == USER).order_by(Subscription.ends_at)
    assert [(r["plan"], r["payment_id"]) for r in rows] == [("month", "pay-1"), ("year", "pay-2")]
    assert as_utc(rows[1]["starts_at"]) == first


async def test_grant_after_expiry_starts_from_now(services: Services) -> None:
    await add_subscription(USER, now() - timedelta(days=40), now() - timedelta(days=10))
    assert await services.subscriptions.premium_until(USER) is None
    before = now()
    ends = await services.subscriptions.grant(USER, 7)
    assert before + timedelta(days=7) <= ends <= now() + timedelta(days=7)


async def test_expired_subscription_is_not_premium(services: Services) -> None:
    await add_subscription(USER, now() - timedelta(days=31), now() - timedelta(seconds=1))
    assert await services.subscriptions.premium_until(USER) is None
    account = await services.users.ensure(USER)
    assert account.premium_until is None
    assert not account.premium


async def test_grants_are_per_person(services: Services) -> None:
    await services.subscriptions.grant(USER, 30)
    assert await services.subscriptions.premium_until(USER + 1) is None


async def test_grant_refuses_non_positive_days(services: Services) -> None:
    with pytest.raises(ValueError, match="positive"):
        await services.subscriptions.grant(USER, 0)
    assert await Subscription.count() == 0


async def test_grant_past_the_year_9999_is_refused_and_grants_nothing(services: Services) -> None:
    """Repeated grants of a century ended in an OverflowError."""
    until = datetime(9921, 8, 31, tzinfo=UTC)
    await add_subscription(USER, now(), until)
    with pytest.raises(PremiumTooLong, match="would end after the year 9999 \\(it runs until 9921-08-31\\)"):
        await services.subscriptions.grant(USER, 36_500)
    assert await services.subscriptions.premium_until(USER) == until
    last = await services.subscriptions.grant(USER, (LATEST_END - until).days)
    assert last == LATEST_END
    with pytest.raises(PremiumTooLong):
        await services.subscriptions.grant(USER, 1)


async def test_revoke_ends_running_subscriptions(services: Services) -> None:
    subscriptions = services.subscriptions
    await subscriptions.grant(USER, 30)
    await subscriptions.grant(USER, 30)
    await subscriptions.grant(USER + 1, 30)
    assert await subscriptions.revoke(USER) is True
    assert await subscriptions.premium_until(USER) is None
    assert await subscriptions.revoke(USER) is False
    # Someone else's premium is untouched; the rows stay as history.
    assert await subscriptions.premium_until(USER + 1) is not None
    assert await Subscription.count().where(Subscription.telegram_id == USER) == 2


async def test_revoke_without_premium_is_false(services: Services) -> None:
    assert await services.subscriptions.revoke(USER) is False


async def test_shorten_cuts_the_paid_subscription(services: Services) -> None:
    subscriptions = services.subscriptions
    ends = await subscriptions.grant(USER, 30, payment_id="pay-1")
    until = await subscriptions.shorten("pay-1", 0.5)
    assert until is not None
    assert until == ends - timedelta(days=15)
    assert await subscriptions.premium_until(USER) == until


async def test_full_refund_ends_premium(services: Services) -> None:
    subscriptions = services.subscriptions
    await subscriptions.grant(USER, 30, payment_id="pay-1")
    assert await subscriptions.shorten("pay-1", 1.0) is None
    assert await subscriptions.premium_until(USER) is None


async def test_shorten_only_touches_that_payment(services: Services) -> None:
    subscriptions = services.subscriptions
    first = await subscriptions.grant(USER, 30, payment_id="pay-1")
    second = await subscriptions.grant(USER, 30, payment_id="pay-2")
    # Refunding the later purchase leaves the earlier one running to its end.
    assert await subscriptions.shorten("pay-2", 1.0) == first
    rows = await Subscription.select().where(Subscription.payment_id == "pay-1")
    assert as_utc(rows[0]["ends_at"]) == first
    assert second > first


async def test_shorten_clamps_the_fraction(services: Services) -> None:
    subscriptions = services.subscriptions
    ends = await subscriptions.grant(USER, 10, payment_id="pay-1")
    assert await subscriptions.shorten("pay-1", -1.0) == ends
    assert await subscriptions.shorten("pay-1", 5.0) is None


async def test_shorten_unknown_payment_is_none(services: Services) -> None:
    await services.subscriptions.grant(USER, 10, payment_id="pay-1")
    assert await services.subscriptions.shorten("pay-unknown", 0.5) is None
    assert await services.subscriptions.premium_until(USER) is not None


async def test_refunding_a_purchase_moves_the_ones_stacked_after_it_earlier(services: Services) -> None:
    subscriptions = services.subscriptions
    await subscriptions.grant(USER, 30, plan="month", payment_id="pay-month")
    year_end = await subscriptions.grant(USER, 365, plan="year", payment_id="pay-year")
    until = await subscriptions.shorten("pay-month", 1.0)
    assert until is not None
    assert abs(until - (year_end - timedelta(days=30))) < SLACK
    assert await subscriptions.premium_until(USER) == until
    year = await Subscription.select().where(Subscription.payment_id == "pay-year").first()
    assert year is not None
    assert abs(as_utc(year["starts_at"]) - now()) < SLACK


async def test_a_refund_takes_back_only_the_days_not_used_yet(services: Services) -> None:
    subscriptions = services.subscriptions
    # 20 of the month's 30 days are used: refunding half of it (15 days) can take back only the 10 left.
    await add_subscription(USER, now() - timedelta(days=20), now() + timedelta(days=10), "pay-month")
    year_end = await subscriptions.grant(USER, 365, plan="year", payment_id="pay-year")
    until = await subscriptions.shorten("pay-month", 0.5)
    assert until is not None
    assert abs(until - (year_end - timedelta(days=10))) < SLACK
    # A purchase used up long ago gives nothing back from the premium running now.
    await add_subscription(USER + 1, now() - timedelta(days=60), now() - timedelta(days=30), "pay-old")
    later = await subscriptions.grant(USER + 1, 30, payment_id="pay-new")
    assert await subscriptions.shorten("pay-old", 1.0) == later


async def test_revoke_ends_purchases_stacked_to_start_later_and_refunds_do_not_bring_premium_back(
    services: Services,
) -> None:
    subscriptions = services.subscriptions
    await subscriptions.grant(USER, 30, plan="month", payment_id="pay-month")
    await subscriptions.grant(USER, 365, plan="year", payment_id="pay-year")
    assert await subscriptions.revoke(USER) is True
    rows = await Subscription.select().where(Subscription.telegram_id == USER)
    assert all(as_utc(row["starts_at"]) <= as_utc(row["ends_at"]) for row in rows)
    assert await subscriptions.shorten("pay-year", 1.0) is None
    assert await subscriptions.shorten("pay-month", 1.0) is None
    assert await subscriptions.premium_until(USER) is None


async def test_refunds_and_grants_at_once_keep_the_stack_whole(services: Services) -> None:
    subscriptions = services.subscriptions
    await subscriptions.grant(USER, 30, plan="month", payment_id="pay-month")
    await asyncio.gather(subscriptions.shorten("pay-month", 1.0), subscriptions.grant(USER, 30, payment_id="pay-2"))
    # Whichever ran first, the second purchase's 30 days remain, counted from now.
    until = await subscriptions.premium_until(USER)
    assert until is not None
    assert abs(until - (now() + timedelta(days=30))) < SLACK


async def test_premium_until_is_utc_aware(services: Services) -> None:
    await services.subscriptions.grant(USER, 3)
    until = await services.subscriptions.premium_until(USER)
    assert until is not None
    assert until.utcoffset() == timedelta(0)
    assert now() + timedelta(days=3) - SLACK < until < now() + timedelta(days=3) + SLACK


async def test_concurrent_grants_stack(services: Services) -> None:
    """Two payments confirmed at the same moment (webhook and a status check, bot and web app) both count."""
    before = now()
    ends = await asyncio.gather(*(services.subscriptions.grant(USER, 30) for _ in range(3)))
    until = await services.subscriptions.premium_until(USER)
    assert until == max(ends)
    assert before + timedelta(days=90) <= until <= now() + timedelta(days=90)


async def test_grants_in_concurrent_transactions_stack(services: Services) -> None:
    """Payments grant inside their own transaction; one that has not committed yet must not be overlooked."""

    async def pay(payment_id: str) -> datetime:
        async with services.database.transaction():
            ends = await services.subscriptions.grant(USER, 30, payment_id=payment_id)
            await asyncio.sleep(0.05)
        return ends

    before = now()
    ends = await asyncio.gather(pay("pay-1"), pay("pay-2"))
    until = await services.subscriptions.premium_until(USER)
    assert until == max(ends)
    assert before + timedelta(days=60) <= until <= now() + timedelta(days=60)


async def test_telegram_ids_beyond_32_bits(services: Services) -> None:
    big = 7_123_456_789
    ends = await services.subscriptions.grant(big, 30)
    assert await services.subscriptions.premium_until(big) == ends
    assert await services.subscriptions.revoke(big)
