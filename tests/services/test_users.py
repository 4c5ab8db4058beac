"""People: get-or-create, model and role choice, profile numbers, erasure."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from pomogator.container import Services
from pomogator.errors import InvalidEmail, PremiumRequired, RoleTooLong, UnknownModel, UserNotFound
from pomogator.llm.catalog import Model
from pomogator.services.conversations import StoredConversation, Turn
from pomogator.services.users import ModelReset, Person, StoredData
from pomogator.store.tables import DailyUsage, DialogMessage, LLMRequest, LogRecord, Payment, Subscription, User
from pomogator.timeutil import utcnow

ANN = 3003
BOB = 3004


def free_models(services: Services) -> list[Model]:
    return [m for m in services.catalog.models if not m.premium_only]


def premium_model(services: Services) -> Model:
    return next(m for m in services.catalog.models if m.premium_only)


def other_free_model(services: Services) -> Model:
    return next(m for m in free_models(services) if m.id != services.catalog.default_id)


async def stored_model(telegram_id: int) -> str | None:
    row = await User.select(User.model).where(User.telegram_id == telegram_id).first()
    assert row is not None
    return row["model"]  # type: ignore[no-any-return]


# --- touch, get, ensure ----------------------------------------------------------------------------------


async def test_touch_creates_then_updates_names(services: Services) -> None:
    users = services.users
    created = await users.touch(Person(ANN, "Ann", "Smith", "ann", "ru"))
    assert created.telegram_id == ANN
    assert created.first_name == "Ann"
    assert created.username == "ann"
    assert created.model == services.catalog.default
    assert created.role is None
    assert not created.premium
    first_row = await User.select().where(User.telegram_id == ANN).first()
    assert first_row is not None

    updated = await users.touch(Person(ANN, "Anna", "Ivanova", None, "en"))
    assert updated.first_name == "Anna"
    assert updated.username is None
    assert updated.created_at == created.created_at
    rows = await User.select().where(User.telegram_id == ANN)
    assert len(rows) == 1
    assert (rows[0]["last_name"], rows[0]["language"]) == ("Ivanova", "en")
    assert rows[0]["last_seen_at"] >= first_row["last_seen_at"]


async def test_an_admin_grant_creates_the_account_once_and_stacks(services: Services) -> None:
    users = services.users
    first, created = await users.grant_premium(4321, 30)
    assert created
    assert (await users.get(4321)).premium_until == first
    second, created = await users.grant_premium(4321, 7)
    assert not created
    assert second == first + timedelta(days=7)
    assert (await users.get(4321)).premium_until == second


async def test_touch_keeps_choices(services: Services) -> None:
    users = services.users
    await users.touch(Person(ANN, "Ann"))
    other = other_free_model(services)
    await users.set_model(ANN, other.id)
    await users.set_role(ANN, "Be brief.")
    account = await users.touch(Person(ANN, "Ann"))
    assert account.model == other
    assert account.role == "Be brief."


async def test_touch_truncates_long_names(services: Services) -> None:
    account = await services.users.touch(Person(ANN, "A" * 300, "B" * 300))
    assert account.first_name == "A" * 255


async def test_get_unknown_person_raises(services: Services) -> None:
    with pytest.raises(UserNotFound) as caught:
        await services.users.get(ANN)
    assert caught.value.telegram_id == ANN
    assert not await services.users.exists(ANN)


async def test_ensure_creates_without_names(services: Services) -> None:
    account = await services.users.ensure(ANN)
    assert account.first_name == ""
    assert await services.users.exists(ANN)
    assert (await services.users.ensure(ANN)).created_at == account.created_at
    assert [a.telegram_id for a in await services.users.list()] == [ANN]


async def test_the_list_shows_the_newest_users_first(services: Services) -> None:
    for telegram_id in (ANN, ANN + 1, ANN + 2):
        await services.users.ensure(telegram_id)
        await asyncio.sleep(0.01)  # distinct creation times
    assert [a.telegram_id for a in await services.users.list()] == [ANN + 2, ANN + 1, ANN]
    assert [a.telegram_id for a in await services.users.list(limit=1)] == [ANN + 2]


async def test_the_list_breaks_ties_by_id_and_reads_everyones_premium(services: Services) -> None:
    for telegram_id in (ANN + 1, ANN, ANN + 2):
        await services.users.ensure(telegram_id)
    await User.update({User.created_at: utcnow()}, force=True)  # created in the same instant
    until = await services.subscriptions.grant(ANN + 1, 30)
    listed = await services.users.list()
    assert [a.telegram_id for a in listed] == [ANN + 2, ANN + 1, ANN]
    assert [a.premium_until for a in listed] == [None, until, None]
    assert listed[1] == await services.users.get(ANN + 1)


async def test_model_missing_from_catalog_falls_back_to_default(services: Services) -> None:
    users = services.users
    await users.touch(Person(ANN, "Ann"))
    await User.update({User.model: "retired/model"}).where(User.telegram_id == ANN)
    account = await users.get(ANN)
    assert account.model == services.catalog.default
    assert not account.model_reset
    assert await stored_model(ANN) == "retired/model"
    # The next touch resets the choice and says why, once.
    touched = await users.touch(Person(ANN, "Ann"))
    assert touched.model == services.catalog.default
    assert (touched.model_reset, touched.reset_from) == (ModelReset.GONE, None)
    assert await stored_model(ANN) is None
    assert not (await users.touch(Person(ANN, "Ann"))).model_reset


# --- model choice ----------------------------------------------------------------------------------------


async def test_set_model_to_a_free_model(services: Services) -> None:
    await services.users.touch(Person(ANN, "Ann"))
    other = other_free_model(services)
    assert await services.users.set_model(ANN, other.id) == other
    assert (await services.users.get(ANN)).model == other


async def test_set_model_refuses_premium_only_for_free_users(services: Services) -> None:
    users = services.users
    await users.touch(Person(ANN, "Ann"))
    other = other_free_model(services)
    await users.set_model(ANN, other.id)
    premium = premium_model(services)
    with pytest.raises(PremiumRequired) as caught:
        await users.set_model(ANN, premium.id)
    assert caught.value.model_id == premium.id
    assert (await users.get(ANN)).model == other
    row = await User.select(User.model).where(User.telegram_id == ANN).first()
    assert row is not None
    assert row["model"] == other.id


async def test_set_model_accepts_premium_only_with_premium(services: Services) -> None:
    await services.users.touch(Person(ANN, "Ann"))
    await services.subscriptions.grant(ANN, 30)
    premium = premium_model(services)
    assert await services.users.set_model(ANN, premium.id) == premium
    account = await services.users.get(ANN)
    assert account.model == premium
    assert account.premium
    assert not account.model_reset


async def test_set_model_unknown_id_or_person(services: Services) -> None:
    await services.users.touch(Person(ANN, "Ann"))
    with pytest.raises(UnknownModel):
        await services.users.set_model(ANN, "nobody/nothing")
    with pytest.raises(UserNotFound):
        await services.users.set_model(BOB, services.catalog.default_id)


async def test_premium_model_is_reset_by_touch_when_premium_ends(services: Services) -> None:
    users = services.users
    default, premium = services.catalog.default, premium_model(services)
    await users.touch(Person(ANN, "Ann"))
    await services.subscriptions.grant(ANN, 30)
    await users.set_model(ANN, premium.id)
    await services.subscriptions.revoke(ANN)

    # Reading the account (`user show` and `user list`, a refund's receipt, a /delete_me prompt's Cancel) shows the
    # default model and stores nothing: the reset is left to the touch of the person's next update, which tells them.
    read = [await users.get(ANN), await users.ensure(ANN), (await users.profile(ANN)).account, *await users.list()]
    for account in read:
        assert account.model == default
        assert not account.model_reset
        assert not account.premium
    assert await stored_model(ANN) == premium.id

    account = await users.touch(Person(ANN, "Ann"))
    assert account.model == default
    assert (account.model_reset, account.reset_from) == (ModelReset.PREMIUM_ENDED, premium)
    assert not account.premium
    assert await stored_model(ANN) is None
    # The reset is stored, so it is reported once.
    again = await users.touch(Person(ANN, "Ann"))
    assert again.model == default
    assert not again.model_reset


async def test_a_model_made_premium_only_is_reset_for_one_who_never_had_premium(services: Services) -> None:
    # The operator's catalog now gives the person's model only with premium, which they never had.
    users = services.users
    premium = premium_model(services)
    await users.touch(Person(ANN, "Ann"))
    await User.update({User.model: premium.id}).where(User.telegram_id == ANN)
    account = await users.touch(Person(ANN, "Ann"))
    assert account.model == services.catalog.default
    assert (account.model_reset, account.reset_from) == (ModelReset.PREMIUM_ONLY, premium)
    assert await stored_model(ANN) is None


async def test_free_model_survives_premium_ending(services: Services) -> None:
    users = services.users
    await users.touch(Person(ANN, "Ann"))
    await services.subscriptions.grant(ANN, 30)
    other = other_free_model(services)
    await users.set_model(ANN, other.id)
    await services.subscriptions.revoke(ANN)
    account = await users.get(ANN)
    assert account.model == other
    assert not account.model_reset


# --- role and email --------------------------------------------------------------------------------------


async def test_set_and_clear_role(services: Services) -> None:
    users = services.users
    await users.touch(Person(ANN, "Ann"))
    await users.set_role(ANN, "  You are a pirate.  ")
    assert (await users.get(ANN)).role == "You are a pirate."
    await users.set_role(ANN, None)
    assert (await users.get(ANN)).role is None
    await users.set_role(ANN, "Short.")
    await users.set_role(ANN, "   ")
    assert (await users.get(ANN)).role is None


async def test_role_too_long_is_refused(services: Services) -> None:
    users = services.users
    limit = services.settings.role_max_chars
    await users.touch(Person(ANN, "Ann"))
    await users.set_role(ANN, "x" * limit)
    with pytest.raises(RoleTooLong) as caught:
        await users.set_role(ANN, "y" * (limit + 1))
    assert (caught.value.length, caught.value.limit) == (limit + 1, limit)
    assert (await users.get(ANN)).role == "x" * limit


async def test_email(services: Services) -> None:
    users = services.users
    await users.touch(Person(ANN, "Ann"))
    assert await users.set_email(ANN, " ann@example.com ") == "ann@example.com"
    assert (await users.get(ANN)).email == "ann@example.com"
    for bad in ("ann", "ann@", "ann@example", "a b@example.com", "x" * 250 + "@example.com"):
        with pytest.raises(InvalidEmail):
            await users.set_email(ANN, bad)
    assert (await users.get(ANN)).email == "ann@example.com"


# --- profile ---------------------------------------------------------------------------------------------


async def test_profile_counts_requests_over_all_models(services: Services) -> None:
    users, quota = services.users, services.quota
    await users.touch(Person(ANN, "Ann"))
    default = services.catalog.default
    other = other_free_model(services)
    for _ in range(3):
        await quota.reserve(ANN, default, premium=False)
    await quota.reserve(ANN, other, premium=False)
    await quota.reserve(BOB, other, premium=False)

    profile = await users.profile(ANN)
    assert profile.requests_today == 4
    allowances = {a.model.id: a for a in profile.allowances}
    assert [a.model.id for a in profile.allowances] == services.catalog.ids
    assert allowances[default.id].used == 3
    assert allowances[default.id].limit == default.free_daily
    assert allowances[default.id].remaining == default.free_daily - 3
    assert allowances[other.id].remaining == other.free_daily - 1
    premium = premium_model(services)
    assert allowances[premium.id].remaining == 0
    assert profile.current.model == default
    assert profile.current.used == 3


async def test_profile_uses_premium_limits(services: Services) -> None:
    await services.users.touch(Person(ANN, "Ann"))
    await services.subscriptions.grant(ANN, 30)
    premium = premium_model(services)
    await services.quota.reserve(ANN, premium, premium=True)
    profile = await services.users.profile(ANN)
    assert profile.account.premium
    allowances = {a.model.id: a for a in profile.allowances}
    assert allowances[premium.id].remaining == premium.premium_daily - 1
    default = services.catalog.default
    assert allowances[default.id].limit == default.premium_daily


async def test_profile_remaining_never_negative(services: Services) -> None:
    await services.users.touch(Person(ANN, "Ann"))
    default = services.catalog.default
    # Used more than today's free limit (premium lapsed during the day).
    await DailyUsage.insert(
        DailyUsage(telegram_id=ANN, model=default.id, day=services.quota.today(), used=default.free_daily + 5)
    )
    assert (await services.users.profile(ANN)).current.remaining == 0


# --- erasure ---------------------------------------------------------------------------------------------


async def add_everything(services: Services, telegram_id: int, payment_key: str) -> None:
    now = datetime.now(UTC)
    await services.users.touch(Person(telegram_id, "Someone"))
    await StoredConversation(telegram_id).append([Turn("user", "hello", 2, "m"), Turn("assistant", "hi", 1, "m")])
    await services.quota.reserve(telegram_id, services.catalog.default, premium=False)
    a_month_ago = (now - timedelta(days=30)).date().isoformat()
    await DailyUsage.insert(DailyUsage(telegram_id=telegram_id, model="m", day=a_month_ago, used=3))
    await LLMRequest.insert(LLMRequest(telegram_id=telegram_id, model="m", cost=Decimal("0.01"), created_at=now))
    await services.subscriptions.grant(telegram_id, 30, plan="month", payment_id=payment_key)
    await LogRecord.insert(
        LogRecord(
            created_at=now,
            level="INFO",
            logger="test",
            message="did something",
            process="bot",
            telegram_id=telegram_id,
            context={"update_id": 1},
        )
    )
    await Payment.insert(
        Payment(
            yookassa_id=f"yk-{payment_key}",
            telegram_id=telegram_id,
            plan="month",
            amount=Decimal("599.00"),
            status="succeeded",
            idempotence_key=payment_key,
            raw_object={"id": f"yk-{payment_key}", "metadata": {"telegram_id": telegram_id}},
            created_at=now,
            updated_at=now,
        )
    )


async def test_delete_erases_everything_but_payments(services: Services) -> None:
    await add_everything(services, ANN, "key-ann")
    await add_everything(services, BOB, "key-bob")

    assert await services.users.delete(ANN) is True

    for table in (User, DialogMessage, LLMRequest, Subscription, LogRecord, Payment):
        assert await table.count().where(table.telegram_id == ANN) == 0, table.__name__
        assert await table.count().where(table.telegram_id == BOB) >= 1, table.__name__
    # Only today's request count stays, until the day is over: erasing does not give the day's requests back.
    kept_usage = await DailyUsage.select(DailyUsage.day, DailyUsage.used).where(DailyUsage.telegram_id == ANN)
    assert kept_usage == [{"day": services.quota.today(), "used": 1}]
    assert await DailyUsage.count().where(DailyUsage.telegram_id == BOB) == 2
    kept = await Payment.select().where(Payment.idempotence_key == "key-ann").first()
    assert kept is not None
    assert kept["telegram_id"] is None
    assert kept["raw_object"] is None
    assert kept["amount"] == Decimal("599.00")
    assert kept["status"] == "succeeded"
    assert not await services.users.exists(ANN)
    with pytest.raises(UserNotFound):
        await services.users.get(ANN)
    # Bob's payment keeps its link.
    bob_payment = await Payment.select().where(Payment.idempotence_key == "key-bob").first()
    assert bob_payment is not None
    assert bob_payment["telegram_id"] == BOB


async def test_request_counts_kept_by_an_erasure_go_once_their_day_is_over(services: Services) -> None:
    await add_everything(services, ANN, "key-ann")
    await add_everything(services, BOB, "key-bob")
    await services.users.delete(ANN)
    await services.users.forget_erased_usage()
    assert await DailyUsage.count().where(DailyUsage.telegram_id == ANN) == 1  # today's: still today

    await DailyUsage.update({DailyUsage.day: "2026-01-02"}).where(DailyUsage.telegram_id == ANN)
    await services.users.forget_erased_usage()
    assert await DailyUsage.count().where(DailyUsage.telegram_id == ANN) == 0
    assert await DailyUsage.count().where(DailyUsage.telegram_id == BOB) == 2  # not erased: kept


async def test_delete_unknown_person_is_false(services: Services) -> None:
    assert await services.users.delete(ANN) is False
    nothing = await services.users.erase(ANN)
    assert nothing == StoredData(account=False) and not nothing and nothing.describe() == "nothing"


async def test_erase_says_what_it_erased_also_under_an_id_without_an_account(services: Services) -> None:
    """The CLI said "not found" after erasing an id's log records and subscriptions."""
    await add_everything(services, ANN, "key-ann")
    await User.delete().where(User.telegram_id == ANN)
    expected = StoredData(
        account=False, messages=2, requests=1, subscriptions=1, log_records=1, usage_days=1, payments=1
    )
    assert await services.users.stored(ANN) == expected
    erased = await services.users.erase(ANN)
    assert erased == expected and erased
    assert erased.describe() == (
        "2 dialog messages, 1 model request, 1 subscription, 1 log record, 1 day of request counts, "
        "1 payment (kept, unlinked)"
    )
    assert not await services.users.stored(ANN)
    assert await services.users.stored(BOB) == StoredData(account=False)


async def test_deleted_person_starts_afresh(services: Services) -> None:
    await add_everything(services, ANN, "key-ann")
    await services.users.delete(ANN)
    account = await services.users.touch(Person(ANN, "Ann"))
    assert not account.premium
    assert account.created_at > datetime.now(UTC) - timedelta(minutes=5)
    assert (await services.users.profile(ANN)).requests_today == 1  # the day's count is not given back
    assert await StoredConversation(ANN).history() == []
