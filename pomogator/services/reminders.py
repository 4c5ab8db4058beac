"""A reminder a few days before premium ends, sent once per subscription even with several instances running."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from loguru import logger

from pomogator.billing import texts
from pomogator.notify import SendResult
from pomogator.store.tables import Subscription
from pomogator.timeutil import as_utc, utcnow

REMIND_BEFORE = timedelta(days=3)
# Piccolo adds the `id` column itself, invisibly to the type checker.
subscription_pk = Subscription._meta.primary_key


class ReminderSender(Protocol):
    """Sends a plain message to a Telegram chat and says how that went; never raises (``TelegramNotifier``)."""

    async def send(self, chat_id: int, text: str) -> SendResult: ...


class ReminderService:
    def __init__(
        self,
        notifier: ReminderSender | None,
        tz: ZoneInfo,
        *,
        premium_on_sale: bool,
        support: str,
        before: timedelta = REMIND_BEFORE,
    ) -> None:
        """``premium_on_sale``: payments are configured, so the reminder offers /billing; otherwise premium is given
        by the admins and the reminder points to ``support``."""
        self.notifier = notifier
        self.tz = tz
        self.premium_on_sale = premium_on_sale
        self.support = support
        self.before = before

    async def send_due(self, now: datetime | None = None) -> int:
        """Remind everyone whose premium ends within the next three days; returns how many were reminded.

        A subscription is claimed by a conditional UPDATE (``reminded_at`` from NULL to now) before its message
        is sent, so concurrent runs — in one process or several — send each reminder at most once. When the message
        does not go out the claim is given back and the next run tries again, unless the person blocked the bot.
        """
        if self.notifier is None:
            return 0
        now = now or utcnow()
        due = await Subscription.select(
            subscription_pk, Subscription.telegram_id, Subscription.starts_at, Subscription.ends_at
        ).where(
            (Subscription.ends_at > now)
            & (Subscription.ends_at <= now + self.before)
            & Subscription.reminded_at.is_null()
        )
        sent = 0
        for row in due:
            ends = as_utc(row["ends_at"])
            if ends <= as_utc(row["starts_at"]):
                continue  # a renewal refunded before it began: no time of its own, nothing of it ends
            # Premium does not end here when a later subscription (a renewal) follows this one, and the person was
            # told already when another one ending at the same moment was reminded.
            if await Subscription.exists().where(
                (Subscription.telegram_id == row["telegram_id"])
                & (
                    (Subscription.ends_at > ends)
                    | ((Subscription.ends_at == ends) & Subscription.reminded_at.is_not_null())
                )
            ):
                continue
            claimed = (
                await Subscription.update({Subscription.reminded_at: now})
                .where((subscription_pk == row["id"]) & Subscription.reminded_at.is_null())
                .returning(subscription_pk)
            )
            if not claimed:
                continue
            try:
                text = texts.premium_ending(ends, self.tz, premium_on_sale=self.premium_on_sale, support=self.support)
                result = await self.notifier.send(row["telegram_id"], text)
            except BaseException:
                # Cancelled at shutdown (the notifier itself never raises): a later run sends it.
                await asyncio.shield(self._release(row["id"], now))
                raise
            # Bound to the person, so that their erasure takes these records too.
            log = logger.bind(user_id=row["telegram_id"])
            if result.ok:
                log.info("Premium reminder sent to {} (ends {})", row["telegram_id"], ends.isoformat())
                sent += 1
            elif result.blocked:
                log.info(
                    "Premium reminder to {} not delivered ({}); not tried again", row["telegram_id"], result.description
                )
            else:
                await self._release(row["id"], now)
                log.warning(
                    "Premium reminder to {} not delivered ({}); the next run tries again",
                    row["telegram_id"],
                    result.description,
                )
        return sent

    @staticmethod
    async def _release(subscription_id: int, claimed_at: datetime) -> None:
        """Give this run's claim back (``reminded_at`` still holds the time it was claimed at)."""
        await Subscription.update({Subscription.reminded_at: None}).where(
            (subscription_pk == subscription_id) & (Subscription.reminded_at == claimed_at)
        )
