"""What the billing and refund services tell people: payers and the admins, through the bot's notifier."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, Protocol
from zoneinfo import ZoneInfo

from loguru import logger

from pomogator.billing import texts
from pomogator.billing.models import SUCCEEDED
from pomogator.errors import PaymentNotVerified
from pomogator.logs.records import about
from pomogator.notify import SendResult
from pomogator.services.notice_claims import (
    AdminTold,
    claim_admins_notice,
    claim_payer_refund_notice,
    forget_admins_told,
    mark_admin_told,
    mark_admins_told_of_payment,
    mark_admins_told_of_refunds,
    mark_payer_told_of_refunds,
    owed_to_admins,
    payers_untold_of_refunds,
    refunds_owed_to_payer,
    release_admins_claim,
    release_payer_refund_claim,
    renew_admins_claim,
    renew_payer_refund_claim,
    told_each_admin,
    untold_to_admins,
)
from pomogator.services.payments import stored_money
from pomogator.timeutil import utcnow

if TYPE_CHECKING:
    from pomogator.services.subscriptions import SubscriptionService

# An unverified payment's problem is told to the admins again after a day at the soonest; so many are remembered.
RETOLD_AFTER_S = 24 * 3600.0
TOLD_MEMORY = 1000
TOO_MANY_REQUESTS = 429
BAD_REQUEST = 400
# Telegram's answers that this chat cannot get the bot's messages, besides 403 (blocked, never started, deactivated):
# the admin's id is wrong or gone. Any other refusal may be ours to mend (a stale bot token answers 401, a wrong Bot
# API URL 404), and the notice waits for it.
NO_SUCH_RECIPIENT = (
    "chat not found",
    "user not found",
    "peer_id_invalid",
    "user is deactivated",
    "bot was blocked",
    "chat_write_forbidden",
)


class Notifier(Protocol):
    """Sends a plain message to a Telegram chat; never raises (pomogator.notify.TelegramNotifier)."""

    async def send(self, chat_id: int, text: str) -> SendResult: ...


def _refused(result: SendResult) -> bool:
    """Telegram answered that this admin cannot get the bot's messages (they blocked the bot, never started it, or
    the id is no chat): sending it again would meet the same answer. Anything else may pass: flood control, Telegram's
    own errors, and the refusals of the bot itself (its token, the Bot API URL)."""
    if result.blocked:
        return True
    description = result.description.lower()
    return result.error_code == BAD_REQUEST and any(answer in description for answer in NO_SUCH_RECIPIENT)


class BillingNotices:
    def __init__(
        self, notifier: Notifier | None, admin_ids: Sequence[int], subscriptions: SubscriptionService, tz: ZoneInfo
    ) -> None:
        self.notifier = notifier
        self.admin_ids = tuple(admin_ids)
        self.subscriptions = subscriptions
        self.tz = tz
        # When each unverified payment's problem was last told to the admins (``not_verified``).
        self._told: dict[tuple[str, str], float] = {}

    async def tell(self, chat_id: int, text: str) -> bool:
        """Send a notice; False when it failed in a way that sending it again may mend. A notice that cannot be
        delivered never undoes what was recorded."""
        result = await self._send(chat_id, text)
        return result is None or result.ok or result.blocked

    async def _send(self, chat_id: int, text: str) -> SendResult | None:
        """Telegram's answer; None when there is no bot token to send with."""
        if self.notifier is None:
            logger.bind(**about(chat_id)).warning("No bot token: notice to {} not sent", chat_id)
            return None
        try:
            return await self.notifier.send(chat_id, text)
        except Exception as exc:
            # Only the type: an HTTP error's text may carry the Bot API URL, which holds the token.
            logger.bind(**about(chat_id)).warning("Notice to {} failed: {}", chat_id, type(exc).__name__)
            return SendResult(False, type(exc).__name__)

    async def _tell_admin(self, admin_id: int, text: str) -> bool:
        """Send an admin a notice; False when it may go out if sent again (Telegram not reached, flood control)."""
        result = await self._send(admin_id, text)
        if result is None or result.ok or _refused(result):
            return True
        code = result.error_code
        if code is not None and code != TOO_MANY_REQUESTS and code < 500:
            # Not this admin's doing: the bot token or the Bot API URL is wrong, or the message. Telegram's own
            # description only: the URL holds the token.
            logger.bind(**about(admin_id)).error(
                "Telegram refused the notice to admin {}: {} {}. Check POMOGATOR_BOT_TOKEN and "
                "POMOGATOR_TELEGRAM_API_URL; the notice of a payment or refund is sent again until it goes out",
                admin_id,
                code,
                result.description[:200],
            )
        return False

    async def tell_admins(self, text: str) -> None:
        """Tell every admin of something no record is kept of (the admins' notices of payments and refunds go through
        ``tell_admins_owed``)."""
        for admin_id in self.admin_ids:
            await self._tell_admin(admin_id, text)

    # --- the payer's notice of refunds ------------------------------------------------------------------------

    async def tell_payer_of_refunds(self, row_id: int, claim: datetime) -> None:
        """Tell the payer of payment ``row_id`` of its refunds they have not heard of, under the claim this process
        took at ``claim``: as it recorded one (``owe_payer_refund``), or once the last claim had lapsed
        (``tell_untold_payers``).

        Each notice tells what was refunded since the payer was last told, and is marked told once delivered (or
        once Telegram answers that they blocked the bot). One that did not go out stays owed with the claim held,
        and the periodic check sends it once the claim lapses (``tell_untold_payers``); so does one owed when the
        payer erased their data, never (the payment no longer names them).

        Never raises: the refund is made and recorded whatever becomes of its notice (``pomogator payments refund``
        failing now would have an operator ask for it again)."""
        try:
            await self._tell_payer_of_refunds_owed(row_id, claim)
        except Exception as exc:
            logger.warning(
                "The payer's notice of a refund of payment {} is left to the periodic check: {}: {}",
                row_id,
                type(exc).__name__,
                exc,
            )

    async def _tell_payer_of_refunds_owed(self, row_id: int, claim: datetime) -> None:
        while True:
            row = await refunds_owed_to_payer(row_id)
            if row is None:
                await release_payer_refund_claim(row_id, claim)
                # Recorded between the look and the release by a process that found the claim taken: this one's to tell.
                claim = utcnow()
                if not await claim_payer_refund_notice(row_id, claim):
                    return
                continue
            renewed = utcnow()
            if not await renew_payer_refund_claim(row_id, claim, renewed):
                logger.warning("The payer's notice of a refund of payment {} was taken over by another process", row_id)
                return
            claim = renewed
            telegram_id: int = row["telegram_id"]
            total = stored_money(row["refunded_amount"])
            since = total - stored_money(row["payer_told_refunded"])
            until = await self.subscriptions.premium_until(telegram_id)
            if not await self.tell(telegram_id, texts.refund_done(since, until, self.tz)):
                return
            await mark_payer_told_of_refunds(row_id, total)

    async def tell_untold_payers(self) -> int:
        """The periodic check: tell payers the notices of refunds that did not go out (the process that recorded
        them stopped first, or Telegram failed), each once its last claim has lapsed; returns of how many payments
        a payer was told something."""
        told = 0
        for row_id in await payers_untold_of_refunds():
            claim = utcnow()
            if await claim_payer_refund_notice(row_id, claim):
                logger.info("Telling the payer again of a refund of payment {}: their notice did not go out", row_id)
                await self.tell_payer_of_refunds(row_id, claim)
                told += 1
        return told

    # --- the admins' notices of payments and refunds ----------------------------------------------------------

    async def tell_admins_recorded(self, row_id: int, claim: datetime | None) -> None:
        """Tell the admins what they are owed of payment ``row_id`` once a payment or refund of it was recorded (the
        money has moved): under the claim this process took at ``claim`` as it recorded it, or, when None (it was
        recorded before, by a process that may have stopped first), under one taken now if the last has lapsed.

        Never raises: the record stands whatever becomes of the notice, and what was not marked told stays owed, for
        the periodic check to send (``tell_untold_admins``)."""
        try:
            if claim is None:
                claim = utcnow()
                if not await claim_admins_notice(row_id, claim):
                    return
            await self.tell_admins_owed(row_id, claim)
        except Exception as exc:
            logger.warning(
                "The admins' notice of payment {} is left to the periodic check: {}: {}",
                row_id,
                type(exc).__name__,
                exc,
            )

    async def tell_admins_owed(self, row_id: int, claim: datetime) -> None:
        """Tell the admins what they are owed of payment ``row_id``, its success first, then its refunds since they
        were last told, under the claim this process took at ``claim`` (``owe_admins``, ``claim_admins_notice``).

        Each notice is marked told once every admin was sent it or cannot be; one that did not go out to an admin
        stays owed with the claim held, and the periodic check sends it, once the claim lapses, to the admins who
        did not have it (``tell_untold_admins``, ``PaymentAdminNotice``). Raises what the database raises: what was
        not marked told is owed still."""
        while True:
            row = await owed_to_admins(row_id)
            if row is None:
                await forget_admins_told(row_id)
                await release_admins_claim(row_id, claim)
                # Recorded between the look and the release by a process that found the claim taken: this one's to tell.
                claim = utcnow()
                if not await claim_admins_notice(row_id, claim):
                    return
                continue
            paid = row["status"] == SUCCEEDED and row["admins_notified_at"] is None and row["telegram_id"] is not None
            kept = await self._tell_admins_claimed(row_id, claim, row, paid=paid)
            if kept is None:
                return
            claim = kept
            if paid:
                await mark_admins_told_of_payment(row_id)
            else:
                await mark_admins_told_of_refunds(row_id, stored_money(row["refunded_amount"]))

    async def tell_untold_admins(self) -> int:
        """The periodic check: tell the admins the notices of payments and refunds that did not go out (the process
        that recorded them stopped first, or Telegram failed), each once its last claim has lapsed; returns of how
        many payments the admins were told something."""
        told = 0
        for row_id in await untold_to_admins():
            claim = utcnow()
            if await claim_admins_notice(row_id, claim):
                logger.info("Telling the admins again of payment {}: their notice did not go out", row_id)
                await self.tell_admins_owed(row_id, claim)
                told += 1
        return told

    async def _tell_admins_claimed(
        self, row_id: int, claim: datetime, row: Mapping[str, Any], *, paid: bool
    ) -> datetime | None:
        """Send the notice of the payment (``paid``) or of its refunds to every admin who has not had it, renewing
        the claim before each: the claim held after, or None when one of them may get it if it is sent again (or
        another process took the claim over: it sends it). Who had it is kept, so that it is sent again to the
        others only; a refund's notice tells each admin of what was refunded since they were last told."""
        told = await told_each_admin(row_id)
        total = stored_money(row["refunded_amount"])
        told_all = stored_money(row["admins_told_refunded"])
        payment_text: str | None = None
        delivered = True
        for admin_id in self.admin_ids:
            was = told.get(admin_id, AdminTold())
            since = max(was.refunded, told_all)
            if was.paid if paid else since >= total:
                continue  # had it in an earlier round, which did not reach every admin
            renewed = utcnow()
            if not await renew_admins_claim(row_id, claim, renewed):
                logger.warning("The admins' notice of payment {} was taken over by another process", row_id)
                return None
            claim = renewed
            if paid:
                payment_text = payment_text or await self._payment_text(row)
                text = payment_text
            else:
                text = texts.admin_refund(row["yookassa_id"], row["telegram_id"], total - since, total)
            if await self._tell_admin(admin_id, text):
                now = AdminTold(paid=True, refunded=was.refunded) if paid else AdminTold(paid=was.paid, refunded=total)
                await mark_admin_told(row_id, admin_id, now)
            else:
                delivered = False
        return claim if delivered else None

    async def _payment_text(self, row: Mapping[str, Any]) -> str:
        telegram_id: int = row["telegram_id"]
        until = await self.subscriptions.premium_until(telegram_id)
        amount = stored_money(row["amount"])
        return texts.admin_payment(row["yookassa_id"], telegram_id, row["plan"], amount, until, self.tz)

    # --- unverified payments ----------------------------------------------------------------------------------

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
