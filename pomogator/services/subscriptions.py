"""Premium subscriptions: grant, extend, revoke, status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from piccolo.engine.sqlite import SQLiteEngine
from piccolo.query.functions.aggregate import Max

from pomogator.store.engine import write_transaction
from pomogator.store.tables import Subscription
from pomogator.timeutil import as_utc, utcnow


@dataclass(frozen=True, slots=True)
class PremiumStatus:
    until: datetime | None

    @property
    def active(self) -> bool:
        return self.until is not None and self.until > utcnow()


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

    async def status(self, telegram_id: int) -> PremiumStatus:
        return PremiumStatus(await self.premium_until(telegram_id))

    async def grant(
        self, telegram_id: int, days: int, *, plan: str = "manual", payment_id: str | None = None
    ) -> datetime:
        """Extend premium by ``days`` from the later of now and the current end; returns the new end.

        Atomic on its own; inside an open transaction it joins it (payments grant together with their status).
        """
        if days <= 0:
            raise ValueError("days must be positive")
        engine = Subscription._meta.db
        async with write_transaction(engine):
            # Concurrent grants for one person must stack, not both start from the same end. SQLite's write
            # transactions already run one at a time; on PostgreSQL the person's lock lasts until commit.
            if not isinstance(engine, SQLiteEngine):
                await Subscription.raw("SELECT pg_advisory_xact_lock({})", telegram_id)
            now = utcnow()
            current = await self.premium_until(telegram_id)
            starts = max(now, current) if current else now
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
        """Cut the subscription bought by ``payment_id`` by ``fraction`` of its length (a refund)."""
        rows = await Subscription.objects().where(Subscription.payment_id == payment_id)
        for row in rows:
            starts, ends = as_utc(row.starts_at), as_utc(row.ends_at)
            row.ends_at = ends - (ends - starts) * min(max(fraction, 0.0), 1.0)
            await row.save([Subscription.ends_at])
        return await self.premium_until(rows[0].telegram_id) if rows else None

    async def revoke(self, telegram_id: int) -> bool:
        """End every running subscription now; returns whether any was running."""
        now = utcnow()
        running = await Subscription.count().where(
            (Subscription.telegram_id == telegram_id) & (Subscription.ends_at > now)
        )
        if running:
            await Subscription.update({Subscription.ends_at: now}).where(
                (Subscription.telegram_id == telegram_id) & (Subscription.ends_at > now)
            )
        return bool(running)
