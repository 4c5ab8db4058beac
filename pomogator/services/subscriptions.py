"""Premium subscriptions: grant, extend, shorten, revoke, and until when premium runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from piccolo.engine.sqlite import SQLiteEngine
from piccolo.query.functions.aggregate import Max

from pomogator.errors import PomogatorError
from pomogator.store.engine import write_transaction
from pomogator.store.tables import Subscription
from pomogator.timeutil import as_utc, utcnow

# The latest end of premium: Python's dates stop at the year 9999, and a day is left for the end to be shown in any
# time zone.
LATEST_END = datetime(9999, 12, 31, tzinfo=UTC)


class PremiumTooLong(PomogatorError):
    """Premium granted would end after ``LATEST_END``."""

    def __init__(self, telegram_id: int, until: datetime) -> None:
        self.telegram_id = telegram_id
        super().__init__(
            f"Premium of {telegram_id} would end after the year 9999 (it runs until {until:%Y-%m-%d}); nothing was "
            "granted."
        )


def running_until(latest_end: datetime | str | None) -> datetime | None:
    """The end of the latest subscription as read from the database, if it is still running, else None."""
    if latest_end is None:
        return None
    until = as_utc(latest_end)
    return until if until > utcnow() else None


class SubscriptionService:
    async def premium_until(self, telegram_id: int) -> datetime | None:
        """The end of the person's latest subscription if it is still running, else None."""
        rows = await Subscription.select(Max(Subscription.ends_at, alias="until")).where(
            Subscription.telegram_id == telegram_id
        )
        return running_until(rows[0]["until"] if rows else None)

    async def premium_until_of(self, telegram_ids: Sequence[int]) -> dict[int, datetime | None]:
        """``premium_until`` of each of ``telegram_ids``, in one query."""
        if not telegram_ids:
            return {}
        rows = await (
            Subscription.select(Subscription.telegram_id, Max(Subscription.ends_at, alias="until"))
            .where(Subscription.telegram_id.is_in(list(telegram_ids)))
            .group_by(Subscription.telegram_id)
        )
        until = {row["telegram_id"]: running_until(row["until"]) for row in rows}
        return {telegram_id: until.get(telegram_id) for telegram_id in telegram_ids}

    async def grant(
        self, telegram_id: int, days: int, *, plan: str = "manual", payment_id: str | None = None
    ) -> datetime:
        """Extend premium by ``days`` from the later of now and the current end; returns the new end. Raises
        PremiumTooLong when it would end after the year 9999 (``LATEST_END``).

        Atomic on its own; inside an open transaction it joins it (payments grant together with their status).
        """
        if days <= 0:
            raise ValueError("days must be positive")
        engine = Subscription._meta.db
        async with write_transaction(engine):
            # Concurrent grants for one person must stack, not both start from the same end.
            await lock_person(telegram_id)
            now = utcnow()
            current = await self.premium_until(telegram_id)
            starts = max(now, current) if current else now
            if starts > LATEST_END - timedelta(days=days):
                raise PremiumTooLong(telegram_id, starts)
            ends = starts + timedelta(days=days)
            await Subscription.insert(
                Subscription(
                    telegram_id=telegram_id,
                    plan=plan,
                    starts_at=starts,
                    ends_at=ends,
                    payment_id=payment_id,
                    created_at=now,
                )
            )
        return ends

    async def shorten(self, payment_id: str, fraction: float) -> datetime | None:
        """Take back ``fraction`` of the days ``payment_id`` bought (a refund); returns the new premium end.

        Only days not yet used can be taken back: at most what is left of that purchase's period. The purchases
        stacked after it move earlier by as much, so the premium's end moves too (refunding a month bought before a
        year ends the year a month sooner). Atomic, under the person's lock, like ``grant``.
        """
        share = min(max(fraction, 0.0), 1.0)
        engine = Subscription._meta.db
        async with write_transaction(engine):
            bought = await Subscription.select(Subscription.telegram_id).where(Subscription.payment_id == payment_id)
            if not bought:
                return None
            telegram_id: int = bought[0]["telegram_id"]
            await lock_person(telegram_id)
            now = utcnow()
            rows = await Subscription.objects().where(Subscription.telegram_id == telegram_id)
            for row in rows:
                if row.payment_id != payment_id:
                    continue
                starts, ends = as_utc(row.starts_at), as_utc(row.ends_at)
                unused = max(ends - max(starts, now), timedelta(0))
                taken = min((ends - starts) * share, unused)
                if taken <= timedelta(0):
                    continue
                row.ends_at = ends - taken
                await row.save([Subscription.ends_at])
                for later in rows:
                    if later is not row and as_utc(later.starts_at) >= ends:
                        later.starts_at = as_utc(later.starts_at) - taken
                        later.ends_at = as_utc(later.ends_at) - taken
                        await later.save([Subscription.starts_at, Subscription.ends_at])
        return await self.premium_until(telegram_id)

    async def revoke(self, telegram_id: int) -> bool:
        """End every running subscription now, and the ones stacked to start later; returns whether any was
        running (or waiting to start). The rows stay as history."""
        engine = Subscription._meta.db
        async with write_transaction(engine):
            await lock_person(telegram_id)
            now = utcnow()
            rows = await Subscription.objects().where(
                (Subscription.telegram_id == telegram_id) & (Subscription.ends_at > now)
            )
            for row in rows:
                # A purchase stacked behind the running one has not started: it ends before it would start.
                row.starts_at = min(as_utc(row.starts_at), now)
                row.ends_at = now
                await row.save([Subscription.starts_at, Subscription.ends_at])
        return bool(rows)


async def lock_person(telegram_id: int) -> None:
    """Inside a write transaction: one change to a person's subscriptions at a time, until the commit. SQLite's
    write transactions already run one at a time; on PostgreSQL the person's advisory lock lasts until commit."""
    if not isinstance(Subscription._meta.db, SQLiteEngine):
        await Subscription.raw("SELECT pg_advisory_xact_lock({})", telegram_id)
