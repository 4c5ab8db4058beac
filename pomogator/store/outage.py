"""A database that cannot be reached while a process serves: which failures are outages, and the patient way the
PostgreSQL pool opens connections, so that a restart or failover of the server delays requests instead of failing
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sqlite3
from collections.abc import Iterator
from typing import Any

import asyncpg

from pomogator.errors import DatabaseUnavailable
from pomogator.logs import alerts

# How long requests wait for a PostgreSQL server that refuses connections (restarting, failing over, starting up)
# before they are refused: a restart takes a few seconds, and a user who sees "typing…" that long loses nothing.
RECONNECT_WAIT_S = 15.0
FIRST_RETRY_S = 0.1
LONGEST_RETRY_S = 2.0
# The shortest time one connection attempt is given, however little of the wait is left.
MIN_ATTEMPT_S = 1.0
# What opening a connection raises while the server is away: refused, reset or unanswered (TimeoutError is an
# OSError), "the database system is starting up / shutting down", the server's connection slots taken.
REFUSALS = (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)
# SQLite's primary result codes of a file that cannot be used now: busy or locked past the busy timeout, an I/O
# error, a full disk, a file that cannot be opened.
SQLITE_OUTAGES = frozenset({5, 6, 10, 13, 14})
# PostgreSQL's "operator intervention" errors (class 57) that end a session or refuse one for a while: an
# administrator's restart (57P01 AdminShutdownError), every other session ended while the server recovers from one
# that crashed (57P02 CrashShutdownError), "starting up / shutting down" (57P03 CannotConnectNowError) and an idle
# session closed (57P05). A new connection works once the server is back. Not the rest of the class: a statement
# cancelled or past its timeout (57014 QueryCanceledError) would fail again the same way, and a dropped database
# (57P04) does not come back.
# Not 25006 (ReadOnlySQLTransactionError, a write to a server that is now a standby) either: the pool keeps its
# connection to that server, so trying again shortly fails again; it needs the connections replaced (or a URL that
# names the primary), which is the operator's to fix, and it is reported as the error it is.
SESSION_ENDED_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57P05"})

_patient = contextvars.ContextVar("pomogator_patient_connect", default=True)


def outage_of(exc: BaseException) -> DatabaseUnavailable | None:
    """``exc`` as DatabaseUnavailable when it says the database could not be reached or used (a connection lost
    in the middle of a statement, a refused reconnect, the server restarting or recovering from a crash, SQLite's
    file busy or unusable); None for anything else, an error in a statement (a cancelled one too) included."""
    if isinstance(exc, DatabaseUnavailable):
        return exc
    if isinstance(exc, asyncpg.PostgresConnectionError):
        return DatabaseUnavailable(type(exc).__name__)
    if isinstance(exc, asyncpg.PostgresError) and exc.sqlstate in SESSION_ENDED_SQLSTATES:
        return DatabaseUnavailable(type(exc).__name__)
    if isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc):
        # "connection is closed", "pool is closed": a connection the server dropped, used again.
        return DatabaseUnavailable(type(exc).__name__)
    if isinstance(exc, sqlite3.OperationalError) and (exc.sqlite_errorcode & 0xFF) in SQLITE_OUTAGES:
        return DatabaseUnavailable(exc.sqlite_errorname)
    return None


@contextlib.contextmanager
def impatient() -> Iterator[None]:
    """Connections opened inside are tried once: a health check reports an outage instead of waiting it out."""
    token = _patient.set(False)
    try:
        yield
    finally:
        _patient.reset(token)


class PatientConnect:
    """``asyncpg.create_pool(connect=...)``: opens the pool's connections, and once ``serving`` is set asks a
    server that refuses again, with growing pauses, until ``wait`` seconds after the outage began; after that each
    connection is tried once until one opens again. A failure then is DatabaseUnavailable.

    The wait is shared: requests that arrive during a long outage are refused at once, not each after ``wait``.
    Only opening a connection is retried: nothing of a statement has reached the server then, so nothing is done
    twice.
    """

    def __init__(self, wait: float = RECONNECT_WAIT_S) -> None:
        self.wait = wait
        self.serving = False
        self._down_since: float | None = None
        self._alerted = False

    @property
    def gave_up(self) -> bool:
        """Whether the server has refused connections for longer than the wait: requests now fail at once."""
        if self._down_since is None:
            return False
        return asyncio.get_running_loop().time() - self._down_since >= self.wait

    def down(self) -> None:
        """The database failed a request (a health check, say) without a connection being opened: the outage, and
        the wait, start now if they have not already."""
        if self._down_since is None:
            self._down_since = asyncio.get_running_loop().time()
        self._alert_if_given_up()

    def up(self) -> None:
        """The database answered: no outage, whether or not a connection had to be opened for it."""
        self._down_since = None
        if self._alerted:
            self._alerted = False
            alerts.notify(alerts.DATABASE_BACK, "PostgreSQL answers again: requests are served.", level="WARNING")

    def _alert_if_given_up(self) -> None:
        """Admins hear of an outage once it lasts past the wait (users are being refused), once per outage."""
        if self.gave_up and not self._alerted:
            self._alerted = True
            alerts.notify(
                alerts.DATABASE_DOWN,
                f"PostgreSQL has not answered for {self.wait:g} s or more: messages and payments are refused "
                "until it is back.",
            )

    async def __call__(self, *args: Any, **kwargs: Any) -> asyncpg.Connection:
        loop = asyncio.get_running_loop()
        if not self.serving:
            return await asyncpg.connect(*args, **kwargs)
        pause = FIRST_RETRY_S
        while True:
            started = loop.time()
            if self.wait > 0 and _patient.get():
                # A server that does not answer at all (a host gone from the network) is not waited for past the
                # end of the wait either.
                left = (self._down_since if self._down_since is not None else started) + self.wait - started
                kwargs["timeout"] = max(MIN_ATTEMPT_S, min(kwargs.get("timeout", left), left))
            try:
                connection: asyncpg.Connection = await asyncpg.connect(*args, **kwargs)
            except REFUSALS as exc:
                now = loop.time()
                if self._down_since is None:
                    self._down_since = started
                left = self._down_since + self.wait - now
                if left <= 0 or not _patient.get():
                    self._alert_if_given_up()
                    raise DatabaseUnavailable(f"cannot connect: {type(exc).__name__}") from exc
                await asyncio.sleep(min(pause, left))
                pause = min(pause * 2, LONGEST_RETRY_S)
            else:
                self.up()
                return connection
