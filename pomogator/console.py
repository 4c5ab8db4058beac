"""The ``pomogator`` console entry point.

``pomogator run bot`` and ``pomogator run web`` exactly (they take no options) start their server directly; every
other command line, ``pomogator run bot --help`` included, goes to the typer app in :mod:`pomogator.cli`. Either way
a domain error becomes one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from pomogator import cli_output, servers
from pomogator.errors import PomogatorError

SERVERS: dict[tuple[str, ...], Callable[[], None]] = {
    ("run", "bot"): servers.run_bot,
    ("run", "web"): servers.run_web,
}


def main() -> None:
    from loguru import logger

    # Until settings are read, loguru's default handler would print local variables with a traceback.
    logger.remove()
    logger.add(sys.stderr, level="WARNING", backtrace=False, diagnose=False)
    try:
        server = SERVERS.get(tuple(sys.argv[1:]))
        if server is not None:
            server()
        else:
            from pomogator.cli import app

            app()
    except PomogatorError as exc:
        cli_output.error(exc.user_message)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:
        logger.opt(exception=exc).error("Unexpected error")
        cli_output.error("unexpected failure; see the log above.")
        raise SystemExit(1) from None
