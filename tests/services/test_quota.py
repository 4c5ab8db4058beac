"""Daily quotas: the calendar day in the configured zone, atomic reservation (also across processes), refunds."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from loguru import logger

from pomogator.config import Settings
from pomogator.container import Services, build_services
from pomogator.errors import DatabaseUnavailable, PremiumRequired, QuotaExceeded
from pomogator.llm.catalog import Model
from pomogator.services import quota as quota_module
from pomogator.services.quota import QuotaService, Reservation
from pomogator.store.engine import Database
from pomogator.store.tables import DailyUsage, QuotaGiveBack
from tests.conftest import make_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
MOSCOW = ZoneInfo("Europe/Moscow")
USER = 1001


def make_model(free: int = 3, premium: int = 5, model_id: str = "test/model") -> Model:
    return Model(
        id=model_id,
        title=model_id,
        free_daily=free,
        premium_daily=premium,
        vision=False,
        context_length=8000,
        max_output_tokens=1000,
    )


# --- the calendar day ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "day", "resets"),
    [
        # Moscow is UTC+3 all year: its midnight is 21:00 UTC.
        (datetime(2025, 3, 1, 20, 59, 59, tzinfo=UTC), "2025-03-01", datetime(2025, 3, 1, 21, 0, tzinfo=UTC)),
        (datetime(2025, 3, 1, 21, 0, tzinfo=UTC), "2025-03-02", datetime(2025, 3, 2, 21, 0, tzinfo=UTC)),
        (datetime(2025, 3, 1, 21, 30, tzinfo=UTC), "2025-03-02", datetime(2025, 3, 2, 21, 0, tzinfo=UTC)),
        (datetime(2025, 3, 1, 0, 30, tzinfo=UTC), "2025-03-01", datetime(2025, 3, 1, 21, 0, tzinfo=UTC)),
        (datetime(2024, 12, 31, 22, 0, tzinfo=UTC), "2025-01-01", datetime(2025, 1, 1, 21, 0, tzinfo=UTC)),
    ],
)
def test_day_and_reset_follow_moscow_midnight(now: datetime, day: str, resets: datetime) -> None:
    quota = QuotaService(MOSCOW)
    assert quota.today(now=now) == day
    assert quota.resets_at(now=now) == resets
    assert quota.resets_at(now=now).utcoffset() == timedelta(0)


def test_naive_and_local_moments_mean_the_same_instant() -> None:
    quota = QuotaService(MOSCOW)
    local = datetime(2025, 3, 2, 0, 30, tzinfo=MOSCOW)
    assert quota.today(now=local) == "2025-03-02"
    assert quota.resets_at(now=local) == datetime(2025, 3, 2, 21, 0, tzinfo=UTC)


def test_timezone_setting_decides_the_day() -> None:
    late_evening_utc = datetime(2025, 3, 1, 21, 30, tzinfo=UTC)
    assert QuotaService(make_settings().tz).today(now=late_evening_utc) == "2025-03-02"
    assert QuotaService(make_settings(timezone="UTC").tz).today(now=late_evening_utc) == "2025-03-01"
    assert QuotaService(make_settings(timezone="America/New_York").tz).today(now=late_evening_utc) == "2025-03-01"


def test_daylight_saving_zone_resets_at_local_midnight() -> None:
    quota = QuotaService(ZoneInfo("Europe/Berlin"))
    # The night of the spring change: Berlin midnight on 31 March is still UTC+1, 23:00 UTC.
    assert quota.resets_at(now=datetime(2024, 3, 30, 12, 0, tzinfo=UTC)) == datetime(2024, 3, 30, 23, 0, tzinfo=UTC)
    # After the change Berlin is UTC+2, so midnight is 22:00 UTC.
    assert quota.resets_at(now=datetime(2024, 3, 31, 12, 0, tzinfo=UTC)) == datetime(2024, 3, 31, 22, 0, tzinfo=UTC)


async def test_services_use_the_configured_zone(services: Services) -> None:
    assert services.quota.tz == ZoneInfo("Europe/Moscow")
    assert services.quota.today(now=datetime(2025, 3, 1, 21, 30, tzinfo=UTC)) == "2025-03-02"


# --- reserving and refunding -----------------------------------------------------------------------------


async def test_reserve_counts_up_to_the_free_limit(services: Services) -> None:
    quota, model = services.quota, make_model(free=3)
    reservations = [await quota.reserve(USER, model, premium=False) for _ in range(3)]
    assert [r.used for r in reservations] == [1, 2, 3]
    assert {(r.telegram_id, r.model_id, r.day, r.limit) for r in reservations} == {(USER, model.id, quota.today(), 3)}
    with pytest.raises(QuotaExceeded) as caught:
        await quota.reserve(USER, model, premium=False)
    assert caught.value.model_id == model.id
    assert caught.value.limit == 3
    assert caught.value.resets_at > datetime.now(UTC)
    assert caught.value.resets_at <= datetime.now(UTC) + timedelta(days=1)
    assert await quota.used_today(USER) == {model.id: 3}


async def test_ensure_left_refuses_as_reserve_would_and_takes_nothing(services: Services) -> None:
    quota, model = services.quota, make_model(free=2, premium=4)
    await quota.ensure_left(USER, model, premium=False)
    for _ in range(2):
        await quota.reserve(USER, model, premium=False)
    with pytest.raises(QuotaExceeded) as caught:
        await quota.ensure_left(USER, model, premium=False)
    assert (caught.value.model_id, caught.value.limit) == (model.id, 2)
    await quota.ensure_left(USER, model, premium=True)
    with pytest.raises(PremiumRequired):
        await quota.ensure_left(USER, make_model(free=0, premium=4, model_id="test/paid"), premium=False)
    assert await quota.used_today(USER) == {model.id: 2}


async def test_premium_limit_applies_with_premium(services: Services) -> None:
    quota, model = services.quota, make_model(free=2, premium=4)
    for _ in range(2):
        await quota.reserve(USER, model, premium=False)
    with pytest.raises(QuotaExceeded):
        await quota.reserve(USER, model, premium=False)
    # The same day's count continues under the premium limit.
    assert (await quota.reserve(USER, model, premium=True)).used == 3
    assert (await quota.reserve(USER, model, premium=True)).limit == 4
    with pytest.raises(QuotaExceeded) as caught:
        await quota.reserve(USER, model, premium=True)
    assert caught.value.limit == 4
    assert await quota.used_today(USER) == {model.id: 4}


async def test_premium_only_model_is_refused_for_free_users(services: Services) -> None:
    quota, model = services.quota, make_model(free=0, premium=2)
    with pytest.raises(PremiumRequired) as caught:
        await quota.reserve(USER, model, premium=False)
    assert caught.value.model_id == model.id
    assert await quota.used_today(USER) == {}
    assert (await quota.reserve(USER, model, premium=True)).used == 1


async def test_quotas_are_per_user_and_per_model(services: Services) -> None:
    quota = services.quota
    first, second = make_model(free=1, model_id="test/first"), make_model(free=1, model_id="test/second")
    await quota.reserve(USER, first, premium=False)
    await quota.reserve(USER, second, premium=False)
    await quota.reserve(USER + 1, first, premium=False)
    with pytest.raises(QuotaExceeded):
        await quota.reserve(USER, first, premium=False)
    assert await quota.used_today(USER) == {"test/first": 1, "test/second": 1}
    assert await quota.used_today(USER + 1) == {"test/first": 1}


async def test_new_moscow_day_starts_at_21_utc(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    quota, model = services.quota, make_model(free=2)
    clock = [datetime(2025, 3, 1, 20, 59, tzinfo=UTC)]
    monkeypatch.setattr("pomogator.services.quota.utcnow", lambda: clock[0])
    for _ in range(2):
        assert (await quota.reserve(USER, model, premium=False)).day == "2025-03-01"
    with pytest.raises(QuotaExceeded) as caught:
        await quota.reserve(USER, model, premium=False)
    assert caught.value.resets_at == datetime(2025, 3, 1, 21, 0, tzinfo=UTC)

    clock[0] = datetime(2025, 3, 1, 21, 30, tzinfo=UTC)
    assert await quota.used_today(USER) == {}
    reservation = await quota.reserve(USER, model, premium=False)
    assert (reservation.day, reservation.used) == ("2025-03-02", 1)
    assert await quota.used_today(USER) == {model.id: 1}


async def test_a_refusal_decided_before_midnight_names_that_midnight_when_told_after_it(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The day is picked before the statement runs; its answer may come back after midnight. The refusal then says
    the limit reset at that midnight, not at the next one, a day later than it does."""
    quota, model = services.quota, make_model(free=1)
    clock = [datetime(2025, 3, 1, 20, 59, 59, tzinfo=UTC)]
    monkeypatch.setattr("pomogator.services.quota.utcnow", lambda: clock[0])
    await quota.reserve(USER, model, premium=False)
    day, limit = quota.reservation_terms(model, premium=False)
    assert day == "2025-03-01"
    clock[0] = datetime(2025, 3, 1, 21, 0, 0, 100_000, tzinfo=UTC)  # the statement's answer arrives
    with pytest.raises(QuotaExceeded) as caught:
        quota.reserved(USER, model, day, limit, None)
    assert caught.value.resets_at == datetime(2025, 3, 1, 21, 0, tzinfo=UTC)


async def test_yesterdays_usage_does_not_count(services: Services) -> None:
    quota, model = services.quota, make_model(free=2)
    yesterday = (datetime.fromisoformat(quota.today()) - timedelta(days=1)).date().isoformat()
    await DailyUsage.insert(DailyUsage(telegram_id=USER, model=model.id, day=yesterday, used=2))
    assert (await quota.reserve(USER, model, premium=False)).used == 1
    assert await quota.used_today(USER) == {model.id: 1}


async def test_refund_gives_one_request_back(services: Services) -> None:
    quota, model = services.quota, make_model(free=2)
    first = await quota.reserve(USER, model, premium=False)
    await quota.reserve(USER, model, premium=False)
    await quota.refund(first)
    assert await quota.used_today(USER) == {model.id: 1}
    assert (await quota.reserve(USER, model, premium=False)).used == 2
    with pytest.raises(QuotaExceeded):
        await quota.reserve(USER, model, premium=False)


async def test_refund_never_goes_below_zero(services: Services) -> None:
    quota, model = services.quota, make_model(free=2)
    reservation = await quota.reserve(USER, model, premium=False)
    await quota.refund(reservation)
    await quota.refund(reservation)
    assert await quota.used_today(USER) == {model.id: 0}


# --- giving back once ------------------------------------------------------------------------------------


async def test_each_reservation_has_a_token_of_its_own(services: Services) -> None:
    quota, model = services.quota, make_model(free=3)
    tokens = {(await quota.reserve(USER, model, premium=False)).token for _ in range(3)}
    assert len(tokens) == 3
    assert all(len(token) == 32 and int(token, 16) >= 0 for token in tokens)


async def test_a_give_back_asked_twice_gives_back_once(services: Services) -> None:
    quota, model = services.quota, make_model(free=3)
    first, second, _ = [await quota.reserve(USER, model, premium=False) for _ in range(3)]
    await quota.give_back(first)
    await quota.give_back(first)
    await quota.refund(first)
    assert await quota.used_today(USER) == {model.id: 2}
    # Another reservation of the same person, model and day is given back all the same.
    await quota.give_back(second)
    await quota.give_back(second)
    assert await quota.used_today(USER) == {model.id: 1}
    assert await QuotaGiveBack.count() == 2


async def test_concurrent_give_backs_of_one_reservation_give_back_once(services: Services) -> None:
    quota, model = services.quota, make_model(free=5)
    reservations = [await quota.reserve(USER, model, premium=False) for _ in range(4)]
    await asyncio.gather(*(quota.give_back(reservations[0]) for _ in range(8)))
    assert await quota.used_today(USER) == {model.id: 3}
    await asyncio.gather(*(quota.refund(reservation) for reservation in reservations[1:] for _ in range(3)))
    assert await quota.used_today(USER) == {model.id: 0}


class LostAnswer:
    """``QuotaService.refund`` whose first try goes through on the server but whose answer is lost: the connection
    drops before the client hears the statement committed (``outage_of`` counts it as an outage)."""

    def __init__(self, refund: Callable[[Reservation], Awaitable[None]], error: Exception) -> None:
        self.refund = refund
        self.error = error
        self.tries = 0
        self.tried_again = asyncio.Event()

    async def __call__(self, reservation: Reservation) -> None:
        self.tries += 1
        await self.refund(reservation)
        if self.tries == 1:
            raise self.error
        self.tried_again.set()


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"), id="pg"),
        pytest.param(DatabaseUnavailable("ConnectionResetError"), id="unavailable"),
    ],
)
async def test_a_give_back_tried_again_after_its_answer_was_lost_gives_back_once(
    services: Services, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    quota, model = services.quota, make_model(free=3)
    first, _ = [await quota.reserve(USER, model, premium=False) for _ in range(2)]
    lost = LostAnswer(quota.refund, error)
    monkeypatch.setattr(quota, "refund", lost)
    monkeypatch.setattr(quota_module, "GIVE_BACK_RETRIES_S", (0.0,))
    await quota.give_back(first)
    async with asyncio.timeout(5):
        await lost.tried_again.wait()
    assert lost.tries == 2
    assert await quota.used_today(USER) == {model.id: 1}


async def test_give_backs_forget_the_records_of_days_before_yesterday(services: Services) -> None:
    quota, model = services.quota, make_model(free=3)
    today = datetime.fromisoformat(quota.today())
    days = [(today - timedelta(days=n)).date().isoformat() for n in (3, 2, 1)]
    for n, day in enumerate(days):
        await QuotaGiveBack.insert(QuotaGiveBack(token=f"{n:032x}", day=day))
    reservation = await quota.reserve(USER, model, premium=False)
    await quota.give_back(reservation)
    rows = await QuotaGiveBack.select(QuotaGiveBack.token, QuotaGiveBack.day).order_by(QuotaGiveBack.day)
    assert rows == [{"token": f"{2:032x}", "day": days[2]}, {"token": reservation.token, "day": quota.today()}]
    assert await quota.used_today(USER) == {model.id: 0}


# --- give-backs still waiting as the process stops ---------------------------------------------------------


class Refusing:
    """``QuotaService.refund`` that refuses the reservations in ``refused`` (the database is unreachable), hangs on
    those in ``hanging``, and refuses every other one once before giving it back."""

    def __init__(self, refund: Callable[[Reservation], Awaitable[None]]) -> None:
        self.refund = refund
        self.refused: set[str] = set()
        self.hanging: set[str] = set()
        self.tried: list[str] = []

    async def __call__(self, reservation: Reservation) -> None:
        self.tried.append(reservation.token)
        if reservation.token in self.hanging and self.tried.count(reservation.token) > 1:
            await asyncio.Event().wait()
        if reservation.token in self.refused or self.tried.count(reservation.token) == 1:
            raise DatabaseUnavailable("cannot connect: ConnectionRefusedError")
        await self.refund(reservation)


async def test_give_backs_waiting_at_close_get_a_last_try_and_the_rest_are_logged(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    quota, model = services.quota, make_model(free=5)
    back, refused, hanging = [await quota.reserve(USER, model, premium=False) for _ in range(3)]
    refusing = Refusing(quota.refund)
    refusing.refused.add(refused.token)
    refusing.hanging.add(hanging.token)
    monkeypatch.setattr(quota, "refund", refusing)
    monkeypatch.setattr(quota_module, "GIVE_BACK_RETRIES_S", (3600.0,))
    for reservation in (back, refused, hanging):
        await quota.give_back(reservation)
    assert len(quota._retries) == 3
    errors: list[str] = []
    sink = logger.add(lambda message: errors.append(message.record["message"]), level="ERROR")
    try:
        async with asyncio.timeout(5):
            await quota.aclose(wait=0.2)
        assert sorted(refusing.tried) == sorted(2 * [back.token, refused.token, hanging.token])
        assert await quota.used_today(USER) == {model.id: 2}
        assert quota._retries == {}
        day = quota.today()
        assert sorted(errors) == [
            f"A request of {USER} for {model.id} on {day} could not be given back, it stays counted: "
            "cannot connect: ConnectionRefusedError",
            f"A request of {USER} for {model.id} on {day} could not be given back, it stays counted: "
            "no answer within 0.2 s as the process stopped",
        ]
        # Closed, a give-back that fails is not left to a later try that would never come.
        errors.clear()
        later = await quota.reserve(USER, model, premium=False)
        await quota.give_back(later)
        assert quota._retries == {}
        assert len(errors) == 1
        assert "stays counted" in errors[0]
    finally:
        logger.remove(sink)


async def test_closing_the_services_closes_the_quota_before_the_database(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []
    quota_close, database_close = QuotaService.aclose, Database.close

    async def close_quota(self: QuotaService, wait: float = quota_module.LAST_TRY_S) -> None:
        closed.append("quota")
        await quota_close(self, wait)

    async def close_database(self: Database) -> None:
        closed.append("database")
        await database_close(self)

    monkeypatch.setattr(QuotaService, "aclose", close_quota)
    monkeypatch.setattr(Database, "close", close_database)
    async with build_services(settings, migrate=True):
        pass
    assert closed == ["quota", "database"]


async def test_concurrent_reservations_never_overspend(services: Services) -> None:
    quota, model = services.quota, make_model(free=5)
    for _ in range(2):
        await quota.reserve(USER, model, premium=False)
    results = await asyncio.gather(
        *(quota.reserve(USER, model, premium=False) for _ in range(10)), return_exceptions=True
    )
    granted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(granted) == 3
    assert sorted(r.used for r in granted) == [3, 4, 5]
    assert len(refused) == 7
    assert all(isinstance(r, QuotaExceeded) for r in refused)
    assert await quota.used_today(USER) == {model.id: 5}


async def test_concurrent_first_reservations_create_one_row(services: Services) -> None:
    quota, model = services.quota, make_model(free=3)
    results = await asyncio.gather(
        *(quota.reserve(USER, model, premium=False) for _ in range(10)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 3
    assert all(isinstance(r, QuotaExceeded) for r in results if isinstance(r, BaseException))
    assert await DailyUsage.count().where(DailyUsage.telegram_id == USER) == 1


WORKER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from zoneinfo import ZoneInfo

    import pomogator.store
    from pomogator.errors import QuotaExceeded
    from pomogator.llm.catalog import Model
    from pomogator.services.quota import QuotaService
    from pomogator.store.engine import Database

    async def main(url: str, go: Path, user: int, attempts: int, limit: int) -> None:
        database = Database(url)
        await database.start(migrate=False)
        quota = QuotaService(ZoneInfo("Europe/Moscow"))
        model = Model("test/shared", "Shared", limit, limit, False, 8000, 1000)
        print("ready", flush=True)
        deadline = time.monotonic() + 30
        while not go.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        results = await asyncio.gather(
            *(quota.reserve(user, model, False) for _ in range(attempts)), return_exceptions=True
        )
        await database.close()
        unexpected = [r for r in results if isinstance(r, BaseException) and not isinstance(r, QuotaExceeded)]
        if unexpected:
            raise unexpected[0]
        print(sum(not isinstance(r, BaseException) for r in results), flush=True)

    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), *map(int, sys.argv[3:6])))
    """
)


async def test_separate_processes_never_overspend(services: Services, tmp_path: Path) -> None:
    """Bot, web app and CLI are separate processes: the database alone must keep the limit."""
    go = tmp_path / "go"
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            services.settings.database_url,
            str(go),
            str(USER),
            "5",
            "7",
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            ready = await asyncio.wait_for(process.stdout.readline(), 60)
            if ready != b"ready\n":
                _, err = await process.communicate()
                pytest.fail(f"worker did not start: {ready!r} {err.decode()}")
        go.touch()
        outputs = [await asyncio.wait_for(p.communicate(), 60) for p in processes]
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()
    granted = [int(out) for out, _ in outputs]
    assert sum(granted) == 7
    assert await services.quota.used_today(USER) == {"test/shared": 7}


async def test_telegram_ids_beyond_32_bits(services: Services) -> None:
    big = 7_123_456_789
    model = make_model(free=1)
    assert (await services.quota.reserve(big, model, premium=False)).telegram_id == big
    with pytest.raises(QuotaExceeded):
        await services.quota.reserve(big, model, premium=False)
    assert await services.quota.used_today(big) == {model.id: 1}
