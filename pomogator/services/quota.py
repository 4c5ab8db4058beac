"""Daily request quotas per person, model and calendar day, reserved atomically in the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from pomogator.errors import PremiumRequired, QuotaExceeded
from pomogator.llm.catalog import Model
from pomogator.store.engine import raw
from pomogator.store.tables import DailyUsage
from pomogator.timeutil import local_day, next_midnight, utcnow

# One statement, so separate processes (bot, web, CLI) can never overspend: the row is created at 1, or
# incremented only while it is below the limit. RETURNING yields no row when the limit is reached.
RESERVE_SQL = (
    "INSERT INTO daily_usage (telegram_id, model, day, used) VALUES ({}, {}, {}, 1) "
    "ON CONFLICT (telegram_id, model, day) DO UPDATE SET used = daily_usage.used + 1 "
    "WHERE daily_usage.used < {} RETURNING used"
)
REFUND_SQL = "UPDATE daily_usage SET used = used - 1 WHERE telegram_id = {} AND model = {} AND day = {} AND used > 0"


@dataclass(frozen=True, slots=True)
class Reservation:
    telegram_id: int
    model_id: str
    day: str
    used: int
    limit: int


class QuotaService:
    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz

    def today(self, now: datetime | None = None) -> str:
        return local_day(now or utcnow(), self.tz).isoformat()

    def resets_at(self, now: datetime | None = None) -> datetime:
        return next_midnight(now or utcnow(), self.tz)

    async def reserve(self, telegram_id: int, model: Model, premium: bool) -> Reservation:
        """Take one request from today's quota; raises QuotaExceeded (and takes nothing) when none is left,
        PremiumRequired when the model has no free allowance at all."""
        day, limit = self.reservation_terms(model, premium)
        rows = await raw(DailyUsage, RESERVE_SQL, telegram_id, model.id, day, limit)
        return self.reserved(telegram_id, model, day, limit, int(rows[0]["used"]) if rows else None)

    def reservation_terms(self, model: Model, premium: bool) -> tuple[str, int]:
        """Today's day and the limit ``RESERVE_SQL`` takes; raises PremiumRequired when there is no allowance."""
        limit = model.daily_limit(premium)
        if limit == 0:
            raise PremiumRequired(model.id)
        return self.today(), limit

    def reserved(self, telegram_id: int, model: Model, day: str, limit: int, used: int | None) -> Reservation:
        """The reservation ``RESERVE_SQL`` made (``used`` is what it returned); QuotaExceeded when it returned none."""
        if used is None:
            raise QuotaExceeded(model.id, limit, self.resets_at())
        return Reservation(telegram_id, model.id, day, used, limit)

    async def refund(self, reservation: Reservation) -> None:
        """Give a reserved request back (the model failed, so the request costs nothing)."""
        await raw(DailyUsage, REFUND_SQL, reservation.telegram_id, reservation.model_id, reservation.day)

    async def used_today(self, telegram_id: int) -> dict[str, int]:
        rows = await DailyUsage.select(DailyUsage.model, DailyUsage.used).where(
            (DailyUsage.telegram_id == telegram_id) & (DailyUsage.day == self.today())
        )
        return {row["model"]: int(row["used"]) for row in rows}
