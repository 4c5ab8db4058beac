"""The ``pomogator`` console entry point.

``pomogator run bot`` and ``pomogator run web`` exactly (they take no options) start their server directly; every
other command line, ``pomogator run bot --help`` included, goes to the typer app in :mod:`pomogator.cli`. Either way
a failure ends here, as one line on stderr and exit code 1, never a traceback: a domain error or a setting, a
database that cannot be used, a network or file error. Anything else is a bug: its traceback goes to a file that
the line names (``POMOGATOR_DEBUG=1`` prints it on stderr instead). Every line is redacted like the logs.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pomogator import cli_output, servers
from pomogator.errors import PomogatorError

if TYPE_CHECKING:
    from pomogator.logs.redact import Redactor

SERVERS: dict[tuple[str, ...], Callable[[], None]] = {
    ("run", "bot"): servers.run_bot,
    ("run", "web"): servers.run_web,
}
DEBUG_ENV = "POMOGATOR_DEBUG"


def main() -> None:
    from loguru import logger

    # Until settings are read, loguru's default handler would print local variables with a traceback.
    logger.remove()
    logger.add(sys.stderr, level="WARNING", backtrace=False, diagnose=False)
    # SIGTERM ends every command as it ends the servers (exit code 143, the database closed on the way out): as a
    # container's first process (`docker run IMAGE db migrate`, `docker compose run migrate logs tail -f`) Python
    # ignores a SIGTERM it has no handler for, and `docker stop` waited for its SIGKILL.
    signal.signal(signal.SIGTERM, servers._terminate)
    try:
        server = SERVERS.get(tuple(sys.argv[1:]))
        if server is not None:
            server()
        else:
            from pomogator.cli import app

            app()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:
        if servers.terminated_by is not None:
            raise SystemExit(128 + servers.terminated_by) from None
        report_failure(exc)
        raise SystemExit(1) from None


def report_failure(exc: Exception) -> None:
    """Print one redacted line about ``exc`` on stderr (after its traceback, when debugging)."""
    redactor = _redactor()
    debugging = _debugging()
    if debugging:
        sys.stderr.write(redactor.traceback(exc) + "\n")
    message = failure_message(exc)
    if message is None:
        where = "see the traceback above" if debugging else _write_details(exc, redactor)
        message = f"unexpected failure ({type(exc).__name__}); {where}."
    cli_output.error(redactor.text(message))


def failure_message(exc: Exception) -> str | None:
    """One line about an ordinary failure (a domain error, the database, Redis, a file or a connection); None for
    a bug. Only the libraries this process has loaded are asked about."""
    if isinstance(exc, PomogatorError):
        return exc.user_message
    asyncpg, sqlite3 = sys.modules.get("asyncpg"), sys.modules.get("sqlite3")
    if (sqlite3 is not None and isinstance(exc, sqlite3.Error)) or (
        asyncpg is not None and isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError)
    ):
        message = f"database error: {cli_output.first_line(exc)} ({type(exc).__name__})"
        # A table or a column is missing: PostgreSQL is migrated by `db migrate` only (an SQLite file by every
        # process), so new code on a database not migrated yet meets its missing parts.
        missing = ("UndefinedTableError", "UndefinedColumnError")
        if type(exc).__name__ in missing or "no such table" in str(exc) or "no such column" in str(exc):
            message += "; has `pomogator db migrate` been run?"
        return message
    redis = sys.modules.get("redis.exceptions")
    if redis is not None and isinstance(exc, redis.RedisError):
        return f"Redis error: {cli_output.first_line(exc)} ({type(exc).__name__})"
    if isinstance(exc, OSError):
        reason = exc.strerror or cli_output.first_line(exc)
        if exc.filename is not None:
            reason += f": {exc.filename}"
        return f"{reason} ({type(exc).__name__})"
    return None


def _debugging() -> bool:
    """``POMOGATOR_DEBUG``, read as the settings are (the environment, then ``.env``)."""
    from pomogator.config import read_variable

    try:
        value = read_variable(DEBUG_ENV)
    except Exception:  # an unreadable .env may be what failed: then the environment alone says
        value = os.environ.get(DEBUG_ENV)
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _redactor() -> Redactor:
    from pomogator.config import load_settings
    from pomogator.logs.redact import Redactor

    try:
        return Redactor.from_settings(load_settings())
    except Exception:  # the settings may be what failed: then the patterns alone redact
        return Redactor()


def _write_details(exc: Exception, redactor: Redactor) -> str:
    """Write the redacted traceback to a new file only this user can read; says where, or how to see it."""
    details = f"pomogator {' '.join(sys.argv[1:])}\n{time.strftime('%Y-%m-%d %H:%M:%S %z')}\n\n"
    details += redactor.traceback(exc) + "\n"
    try:
        handle, path = tempfile.mkstemp(prefix="pomogator-error-", suffix=".txt")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(redactor.text(details))
    except OSError:
        return f"set {DEBUG_ENV}=1 to see the traceback"
    return f"the traceback is in {path} ({DEBUG_ENV}=1 prints it here)"
