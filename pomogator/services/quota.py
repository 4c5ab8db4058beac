"""Daily request quotas per person, model and calendar day, reserved atomically in the database."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from loguru import logger
from piccolo.engine.sqlite import SQLiteEngine

from pomogator.errors import PremiumRequired, QuotaExceeded
from pomogator.llm.catalog import Model
from pomogator.store.engine import SharedConnectionSQLiteEngine, question_marks, raw, write_transaction
from pomogator.store.outage import outage_of
from pomogator.store.tables import DailyUsage, QuotaGiveBack
from pomogator.timeutil import end_of_day, local_day, next_midnight, utcnow

# One statement, so separate processes (bot, web, CLI) can never overspend: the row is created at 1, or
# incremented only while it is below the limit. RETURNING yields no row when the limit is reached.
RESERVE_SQL = (
    "INSERT INTO daily_usage (telegram_id, model, day, used) VALUES ({}, {}, {}, 1) "
    "ON CONFLICT (telegram_id, model, day) DO UPDATE SET used = daily_usage.used + 1 "
    "WHERE daily_usage.used < {} RETURNING used"
)
# A give-back records its reservation's token and takes the request back only when the token is new, in one
# statement: tried again after a connection lost in the middle of it (the server may have committed it all the same),
# asked twice or twice at once, it takes back one request. ``ON CONFLICT DO NOTHING`` waits for a concurrent insert of
# the same token to commit and then inserts nothing, so ``recorded`` is empty for all but one of them.
#
# The same statement deletes the records of the days before yesterday. A record is only needed while its
# reservation's give-back may still be tried: minutes after the failure (``GIVE_BACK_RETRIES_S``), at most into the
# next day for a request reserved just before midnight. Deleting here instead of in the web app's housekeeping keeps
# the table small in every deployment (a bot without the web app included) and costs a look-up in the ``day`` index
# that finds nothing on most calls, off the messages' path: give-backs are rare (a model error, a stop, an answer
# that never arrived), and each takes one round trip either way.
GIVE_BACK_SQL = (
    "WITH recorded AS (INSERT INTO quota_give_backs (token, day) VALUES ({}, {}) ON CONFLICT (token) DO NOTHING "
    "RETURNING 1), forgotten AS (DELETE FROM quota_give_backs WHERE day < {}) "
    "UPDATE daily_usage SET used = used - 1 WHERE telegram_id = {} AND model = {} AND day = {} AND used > 0 "
    "AND EXISTS (SELECT 1 FROM recorded)"
)
# SQLite's ``GIVE_BACK_SQL``: its steps in one write transaction (``BEGIN IMMEDIATE``), so no other writer comes
# between the first, which finds the token unrecorded, and the second, which records it.
SQLITE_GIVE_BACK_SQL = (
    "UPDATE daily_usage SET used = used - 1 WHERE telegram_id = {} AND model = {} AND day = {} AND used > 0 "
    "AND NOT EXISTS (SELECT 1 FROM quota_give_backs WHERE token = {})",
    "INSERT OR IGNORE INTO quota_give_backs (token, day) VALUES ({}, {})",
    "DELETE FROM quota_give_backs WHERE day < {}",
)
GIVE_BACK_RETRIES_S = (5.0, 30.0, 120.0, 600.0)
"""When a request that could not be given back (the database was unreachable) is tried again, in seconds after the
failure and then after each further try. After the last one it stays counted, and an error is logged."""
LAST_TRY_S = 3.0
"""How long the last try of the give-backs still waiting to be tried again may take as the process stops
(``QuotaService.aclose``), all of them together."""


def new_token() -> str:
    """A reservation's token: 128 random bits, as 32 hexadecimal digits."""
    return secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class Reservation:
    telegram_id: int
    model_id: str
    day: str
    used: int
    limit: int
    token: str = field(default_factory=new_token)
    """What its give-back records (``QuotaService.refund``): one request is given back per reservation, however often
    its give-back is tried. Made with the reservation, in the process: reserving costs no statement more."""

    @classmethod
    def of(cls, telegram_id: int, model_id: str, day: str, limit: int, used: int | None) -> Reservation | None:
        """The request ``RESERVE_SQL`` took (``used`` is what it returned); None when it took none."""
        return None if used is None else cls(telegram_id, model_id, day, used, limit)


T = TypeVar("T")
Rows = Sequence[Mapping[str, Any]]


def used_of(rows: Rows) -> int | None:
    """``RESERVE_SQL``'s ``used`` from the first row of a statement around it; None: it took nothing."""
    used = rows[0]["used"] if rows else None
    return None if used is None else int(used)


class QuotaService:
    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        # Give-backs waiting for the database to come back (``give_back``), with their reservations.
        self._retries: dict[asyncio.Task[None], Reservation] = {}
        # Set by ``aclose``: a give-back that fails from then on is not tried again.
        self._closed = False

    def today(self, now: datetime | None = None) -> str:
        return local_day(now or utcnow(), self.tz).isoformat()

    def resets_at(self, now: datetime | None = None) -> datetime:
        return next_midnight(now or utcnow(), self.tz)

    def day_ends_at(self, day: str) -> datetime:
        """When the quota day ``day`` (``today()``'s form) ends: its requests are counted until then. A refusal
        says this, not the next midnight after the refusal: one decided just before midnight and told just after
        would otherwise name the day after tomorrow."""
        return end_of_day(date.fromisoformat(day), self.tz)

    async def reserve(self, telegram_id: int, model: Model, premium: bool) -> Reservation:
        """Take one request from today's quota; raises QuotaExceeded (and takes nothing) when none is left,
        PremiumRequired when the model has no free allowance at all."""
        reservation, _ = await self.reserve_by(RESERVE_SQL, telegram_id, model, premium)
        return reservation

    async def reserve_by(
        self, sql: str, telegram_id: int, model: Model, premium: bool, *more: Any
    ) -> tuple[Reservation, Rows]:
        """``reserve`` with ``sql``: ``RESERVE_SQL`` alone or inside a larger statement whose first row carries its
        ``used`` (parameters: ``RESERVE_SQL``'s, then ``more``). Returns the reservation and the rows. Like the rest
        of a chat message's statements it commits without waiting for the disk (``lazy_commit``)."""
        day, limit = self.reservation_terms(model, premium)

        def taken(rows: Rows) -> Reservation | None:
            return Reservation.of(telegram_id, model.id, day, limit, used_of(rows))

        statement = raw(DailyUsage, sql, telegram_id, model.id, day, limit, *more, lazy_commit=True)
        rows = await self.take(statement, taken)
        return self.reserved(telegram_id, model, day, limit, used_of(rows)), rows

    async def take(self, statement: Awaitable[T], taken: Callable[[T], Reservation | None]) -> T:
        """Await ``statement``, which takes a request from the quota, to its end even if the caller is cancelled
        meanwhile: by then the statement may have committed, and only its result (``taken``: the reservation in
        it, None when none was made) tells whether a request was taken. A cancelled caller gives it back before
        the cancellation goes on, so a shutdown that cuts a message off at its first step costs its sender nothing;
        a give-back the database refuses then is tried again later (``give_back``), and the caller still gets its
        CancelledError.
        """
        running = asyncio.ensure_future(statement)
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            await asyncio.shield(self._give_back_taken(running, taken))
            raise

    async def _give_back_taken(self, running: asyncio.Future[T], taken: Callable[[T], Reservation | None]) -> None:
        try:
            result = await running
        except Exception as exc:
            # A statement that failed took nothing; its error has nobody left to go to.
            logger.info("A cancelled message's first statement failed ({}): nothing to give back", type(exc).__name__)
            return
        reservation = taken(result)
        if reservation is not None:
            await self._try_give_back(reservation)

    async def give_back(self, reservation: Reservation) -> None:
        """Give ``reservation`` back, to the end even if the caller is cancelled meanwhile. Never raises: a give-back
        that fails does not replace what led to it (the model's error, a stop, a cancellation); it is logged and,
        when the database was unreachable, tried again later (``GIVE_BACK_RETRIES_S``) in the background."""
        await asyncio.shield(asyncio.ensure_future(self._try_give_back(reservation)))

    async def _try_give_back(self, reservation: Reservation) -> None:
        outage = await self._refund_unless_outage(reservation, again=False)
        if outage is None:
            return
        if self._closed:
            _stays_counted(reservation, outage)
            return
        logger.warning(
            "A request of {} could not be given back, the database is unavailable ({}): trying again later",
            reservation.telegram_id,
            outage,
        )
        task = asyncio.create_task(self._give_back_later(reservation))
        self._retries[task] = reservation
        task.add_done_callback(self._forget_retry)

    def _forget_retry(self, task: asyncio.Task[None]) -> None:
        self._retries.pop(task, None)

    async def _give_back_later(self, reservation: Reservation) -> None:
        outage = ""
        for delay in GIVE_BACK_RETRIES_S:
            await asyncio.sleep(delay)
            failure = await self._refund_unless_outage(reservation, again=True)
            if failure is None:
                return
            outage = failure
        _stays_counted(reservation, outage)

    async def _refund_unless_outage(self, reservation: Reservation, *, again: bool) -> str | None:
        """Give ``reservation`` back (``again``: on a later try); the database outage that prevented it (to try
        again), else None: given back, or failed for another reason (logged; trying again would not help)."""
        try:
            await self.refund(reservation)
        except Exception as exc:
            outage = outage_of(exc)
            if outage is not None:
                return outage.detail
            logger.opt(exception=exc).error("A request of {} could not be given back", reservation.telegram_id)
            return None
        if again:
            logger.info("A request of {} was given back on a later try", reservation.telegram_id)
        return None

    def reservation_terms(self, model: Model, premium: bool) -> tuple[str, int]:
        """Today's day and the limit ``RESERVE_SQL`` takes; raises PremiumRequired when there is no allowance."""
        limit = model.daily_limit(premium)
        if limit == 0:
            raise PremiumRequired(model.id)
        return self.today(), limit

    def reserved(self, telegram_id: int, model: Model, day: str, limit: int, used: int | None) -> Reservation:
        """The reservation ``RESERVE_SQL`` made (``used`` is what it returned); QuotaExceeded when it returned none."""
        reservation = Reservation.of(telegram_id, model.id, day, limit, used)
        if reservation is None:
            raise QuotaExceeded(model.id, limit, self.day_ends_at(day))
        return reservation

    async def ensure_left(self, telegram_id: int, model: Model, premium: bool) -> None:
        """Raise QuotaExceeded (or PremiumRequired) when no request of ``model`` is left today; takes nothing. For
        work refused before it starts (a file's download and reading), the request being taken as the answer
        starts: the limit is the one ``reserve`` applies."""
        day, limit = self.reservation_terms(model, premium)
        used = (await self.used_on(telegram_id, day)).get(model.id, 0)
        if used >= limit:
            raise QuotaExceeded(model.id, limit, self.day_ends_at(day))

    async def refund(self, reservation: Reservation) -> None:
        """Give a reserved request back (the model failed, so the request costs nothing): once per reservation, so
        asking again (after a failure that may have given it back all the same, or at the same time) gives back
        nothing more. One try, which raises what the database raised; ``give_back`` is the one that tries again."""
        r = reservation
        forget_before = (local_day(utcnow(), self.tz) - timedelta(days=1)).isoformat()
        engine = QuotaGiveBack._meta.db
        if not isinstance(engine, SQLiteEngine):
            await raw(DailyUsage, GIVE_BACK_SQL, r.token, r.day, forget_before, r.telegram_id, r.model_id, r.day)
            return
        steps = list(
            zip(
                SQLITE_GIVE_BACK_SQL,
                ((r.telegram_id, r.model_id, r.day, r.token), (r.token, r.day), (forget_before,)),
                strict=True,
            )
        )
        if isinstance(engine, SharedConnectionSQLiteEngine) and engine.current_transaction.get() is None:
            await engine.execute_atomically([(question_marks(sql), args) for sql, args in steps])
            return
        async with write_transaction(engine):
            for sql, args in steps:
                await raw(DailyUsage, sql, *args)

    async def aclose(self, wait: float = LAST_TRY_S) -> None:
        """As the process stops, before the database closes: the give-backs still waiting to be tried again
        (``give_back``) get one last try each, all within ``wait`` seconds, and each request that stays counted is
        logged at ERROR (person, model, day). Their waits are cancelled first, so that none of their own tries runs
        beside the last one. A give-back that fails after this is not tried again (logged at ERROR at once). Never
        raises but CancelledError."""
        self._closed = True
        pending = dict(self._retries)
        if not pending:
            return
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        reservations = list(pending.values())
        tries = [asyncio.ensure_future(self._refund_unless_outage(r, again=True)) for r in reservations]
        done, _ = await asyncio.wait(tries, timeout=wait)
        for reservation, attempt in zip(reservations, tries, strict=True):
            if attempt not in done:
                # Its statement may still go through; nothing will try it again.
                attempt.cancel()
                _stays_counted(reservation, f"no answer within {wait:g} s as the process stopped")
                continue
            outage = attempt.result()
            if outage is not None:
                _stays_counted(reservation, outage)

    async def used_today(self, telegram_id: int) -> dict[str, int]:
        return await self.used_on(telegram_id, self.today())

    async def used_on(self, telegram_id: int, day: str) -> dict[str, int]:
        rows = await DailyUsage.select(DailyUsage.model, DailyUsage.used).where(
            (DailyUsage.telegram_id == telegram_id) & (DailyUsage.day == day)
        )
        return {row["model"]: int(row["used"]) for row in rows}


def _stays_counted(reservation: Reservation, reason: str) -> None:
    """Nothing will try to give ``reservation`` back any more: say so, for an operator to give it back by hand."""
    logger.error(
        "A request of {} for {} on {} could not be given back, it stays counted: {}",
        reservation.telegram_id,
        reservation.model_id,
        reservation.day,
        reason,
    )
