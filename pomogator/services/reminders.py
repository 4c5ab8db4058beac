"""A reminder a few days before premium ends, sent once per subscription even with several instances running."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from loguru import logger

from pomogator.billing import texts
from pomogator.services.billing import Notifier
from pomogator.store.tables import Subscription
from pomogator.timeutil import as_utc, utcnow

REMIND_BEFORE = timedelta(days=3)
# Piccolo adds the `id` column itself, invisibly to the type checker.
subscription_pk = Subscription._meta.primary_key


class ReminderService:
    def __init__(self, notifier: Notifier | None, tz: ZoneInfo, before: timedelta = REMIND_BEFORE) -> None:
        self.notifier = notifier
        self.tz = tz
        self.before = before

    async def send_due(self, now: datetime | None = None) -> int:
        """Remind everyone whose premium ends within the next three days; returns how many were reminded.

        A subscription is claimed by a conditional UPDATE (``reminded_at`` from NULL to now) before its message
        is sent, so concurrent runs — in one process or several — send each reminder at most once.
        """
        if self.notifier is None:
            return 0
        now = now or utcnow()
        due = await Subscription.select(subscription_pk, Subscription.telegram_id, Subscription.ends_at).where(
            (Subscription.ends_at > now)
            & (Subscription.ends_at <= now + self.before)
            & Subscription.reminded_at.is_null()
        )
        sent = 0
        for row in due:
            ends = as_utc(row["ends_at"])
            # Premium does not end here when a later subscription (a renewal) follows this one.
            if await Subscription.exists().where(
                (Subscription.telegram_id == row["telegram_id"]) & (Subscription.ends_at > ends)
            ):
                continue
            claimed = (
                await Subscription.update({Subscription.reminded_at: now})
                .where((subscription_pk == row["id"]) & Subscription.reminded_at.is_null())
                .returning(subscription_pk)
            )
            if not claimed:
                continue
            await self.notifier.send(row["telegram_id"], texts.premium_ending(ends, self.tz))
            logger.info("Premium reminder sent to {} (ends {})", row["telegram_id"], ends.isoformat())
            sent += 1
        return sent
