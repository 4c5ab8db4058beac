"""The background jobs of every server process, ``pomogator run bot`` and ``pomogator run web`` alike: the premium
reminders, the check of payments whose notification has not come, and the housekeeping (erased people's request
counts, old log records).

A deployment may run the bot alone (no YooKassa, so no web app), so the bot runs them too, not only the web app.
Each is safe to run in several processes at once: a reminder or a payment is claimed by a conditional UPDATE before
it is acted on, and the housekeeping only deletes what no process keeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from loguru import logger

from pomogator.config import Settings
from pomogator.container import Services
from pomogator.store.outage import outage_of
from pomogator.timeutil import utcnow

# How often what is kept only for a while is deleted: the request counts of people who erased their data, kept for
# the rest of their day, and the stored log records older than POMOGATOR_LOG_DB_RETENTION_DAYS.
HOUSEKEEPING_SECONDS = 3600.0


def start_jobs(settings: Settings, services: Services) -> list[asyncio.Task[None]]:
    """Start the jobs ``settings`` turn on; the caller cancels the tasks when it stops. Logs once which are off."""
    tasks: list[asyncio.Task[None]] = []
    if settings.reminder_interval_seconds > 0 and services.reminders is not None:
        if services.notifier is None:
            logger.warning("POMOGATOR_BOT_TOKEN is not set: premium reminders are off")
        else:
            reminders = services.reminders
            tasks.append(
                asyncio.create_task(every(settings.reminder_interval_seconds, reminders.send_due, "Premium reminders"))
            )
    # The billing service (and the yookassa SDK with requests under it, ~9 MiB) is built by the first notification or
    # waiting payment.
    if not settings.billing_configured:
        logger.warning("YooKassa is not configured: payments are off")
    elif settings.payment_check_interval_seconds > 0:
        tasks.append(
            asyncio.create_task(
                every(
                    settings.payment_check_interval_seconds,
                    lambda: check_waiting_payments(services),
                    "Checking waiting payments",
                )
            )
        )
    tasks.append(
        asyncio.create_task(
            every(
                HOUSEKEEPING_SECONDS,
                services.users.forget_erased_usage,
                "Forgetting erased people's request counts",
                wait_first=True,
            )
        )
    )
    if settings.log_db_retention_days > 0:
        # At once too: a process restarted more often than hourly would otherwise never get to it.
        tasks.append(
            asyncio.create_task(
                every(HOUSEKEEPING_SECONDS, lambda: delete_old_logs(services), "Deleting old log records")
            )
        )
    return tasks


async def every(interval: float, job: Callable[[], Awaitable[object]], what: str, *, wait_first: bool = False) -> None:
    """Run ``job`` every ``interval`` seconds until cancelled (the first time at once, or after ``interval`` with
    ``wait_first``); a failure is logged and the next round tries again."""
    if wait_first:
        await asyncio.sleep(interval)
    while True:
        try:
            await job()
        except Exception as exc:
            outage = outage_of(exc)
            if outage is not None:
                logger.warning("{} skipped, the database is unavailable: {}; will try again", what, outage.detail)
            else:
                logger.opt(exception=exc).error("{} failed; will try again", what)
        await asyncio.sleep(interval)


async def check_waiting_payments(services: Services) -> None:
    """Apply what YooKassa says about payments whose notification has not come (the SDK loads only if any wait)."""
    from pomogator.services.payments import waiting_payments

    waiting = await waiting_payments()
    if waiting:
        await services.billing.check_waiting(waiting)


async def delete_old_logs(services: Services) -> None:
    """Delete the stored log records older than ``POMOGATOR_LOG_DB_RETENTION_DAYS``, as ``pomogator logs prune``."""
    from pomogator.logs.store import prune_logs

    days = services.settings.log_db_retention_days
    deleted = await prune_logs(utcnow() - timedelta(days=days))
    if deleted:
        logger.info("Deleted {} stored log records older than {} days", deleted, days)
