"""What the billing and refund services tell people: payers and the admins, through the bot's notifier."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NoReturn, Protocol

from loguru import logger

from pomogator.billing import texts
from pomogator.errors import PaymentNotVerified
from pomogator.logs.records import about
from pomogator.notify import SendResult

# An unverified payment's problem is told to the admins again after a day at the soonest; so many are remembered.
RETOLD_AFTER_S = 24 * 3600.0
TOLD_MEMORY = 1000


class Notifier(Protocol):
    """Sends a plain message to a Telegram chat; never raises (pomogator.notify.TelegramNotifier)."""

    async def send(self, chat_id: int, text: str) -> SendResult: ...


class BillingNotices:
    def __init__(self, notifier: Notifier | None, admin_ids: Sequence[int]) -> None:
        self.notifier = notifier
        self.admin_ids = tuple(admin_ids)
        # When each unverified payment's problem was last told to the admins (``not_verified``).
        self._told: dict[tuple[str, str], float] = {}

    async def tell(self, chat_id: int, text: str) -> bool:
        """Send a notice; False when it failed in a way that sending it again may mend. A notice that cannot be
        delivered never undoes what was recorded."""
        if self.notifier is None:
            logger.bind(**about(chat_id)).warning("No bot token: notice to {} not sent", chat_id)
            return True
        try:
            result = await self.notifier.send(chat_id, text)
        except Exception as exc:
            # Only the type: an HTTP error's text may carry the Bot API URL, which holds the token.
            logger.bind(**about(chat_id)).warning("Notice to {} failed: {}", chat_id, type(exc).__name__)
            return False
        return result.ok or result.blocked

    async def tell_admins(self, text: str) -> None:
        for admin_id in self.admin_ids:
            await self.tell(admin_id, text)

    async def not_verified(self, payment_id: str, problem: str) -> NoReturn:
        """Refuse the payment's notification (or check): raises PaymentNotVerified. The admins hear of it once a day
        per payment and problem: YooKassa delivers a refused notification again and again for a day, the ten-minute
        check asks again."""
        logger.warning("YooKassa payment {} not verified: {}", payment_id, problem)
        now = time.monotonic()
        told = self._told.get((payment_id, problem))
        if told is None or now - told >= RETOLD_AFTER_S:
            if len(self._told) >= TOLD_MEMORY:
                self._told.clear()
            self._told[(payment_id, problem)] = now
            await self.tell_admins(texts.admin_not_verified(payment_id, problem))
        raise PaymentNotVerified(f"Payment {payment_id} not verified: {problem}.")
