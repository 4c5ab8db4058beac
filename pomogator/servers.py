"""The server processes, ``pomogator run bot`` and ``pomogator run web``, and what every command does first: read the
settings and set up logging.

This module does not import the CLI framework: ``pomogator.console`` starts the servers without it, so a process
that runs for weeks does not keep typer and click (~1.5 MiB) for one parse of its command line.
"""

from __future__ import annotations

import asyncio
import gc
import signal
from types import FrameType
from typing import TYPE_CHECKING

from pomogator.heartbeat import mark_starting

if TYPE_CHECKING:
    from pomogator.config import Settings

# The youngest generation is collected after this many new container objects instead of CPython's 700. An answer
# leaves a few hundred behind (requests, responses, models), so with 700 the collector ran several times a second
# under load, promoting short-lived objects it then had to walk again in older generations: ~10 % of the bot's CPU
# at full load, against ~4 % with this (and fewer full collections, whose pauses make the slowest replies).
YOUNG_GENERATION_THRESHOLD = 7000


def settings_for(*needs: str, process: str = "cli") -> Settings:
    """Load settings, configure logging for this process, report ``POMOGATOR_*`` variables that are no setting,
    check the settings this command needs."""
    # Imported here: the settings model loads pydantic (0.1-0.2 s of a cold start), which `pomogator --help` never
    # needs.
    from pomogator.config import load_settings
    from pomogator.logging import setup_logging

    settings = load_settings()
    if process == "cli" and "log_level" not in settings.model_fields_set:
        # A command's own output says what it did: the INFO records behind it (in UTC, the SDKs' "Retrying…") would
        # only break into it on stderr. The database keeps them as ever (``POMOGATOR_LOG_DB_LEVEL``).
        setup_logging(settings.model_copy(update={"log_level": "WARNING"}), process)
    else:
        setup_logging(settings, process)
    report_unknown_variables(settings)
    # After the report: a setting missing because its name was misspelt is then explained right above.
    settings.require(*needs)
    return settings


_reported_variables: set[str] = set()


def report_unknown_variables(settings: Settings) -> None:
    """Log a warning for each ``POMOGATOR_*`` variable that is no setting (a typo would otherwise leave its setting
    at the default without a word: ``POMOGATOR_DATABASE_URI`` a fresh SQLite file), once per process. The start goes
    on; the values are never shown."""
    from loguru import logger

    from pomogator.config import unknown_variable_warning

    for name in settings.unknown_variables:
        if name.upper() not in _reported_variables:
            _reported_variables.add(name.upper())
            logger.warning(unknown_variable_warning(name))
    for problem in settings.env_file_problems:
        if problem not in _reported_variables:
            _reported_variables.add(problem)
            logger.warning(problem)


def freeze_start_up_objects() -> None:
    """Move everything allocated so far — the imported modules, aiogram's and openai's models — out of the garbage
    collector's reach: it lives as long as the server does. Without this, every full collection walks those ~280
    thousand objects again and pauses the event loop for about 0.2 s, which a busy bot's slowest replies wait out.
    The collector then runs less often (``YOUNG_GENERATION_THRESHOLD``)."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, oldest)


terminated_by: int | None = None
"""The signal that is stopping this server, once ``_terminate`` ran: the SystemExit it raises may reach the console
wrapped in another exception (raised inside pydantic-core while aiogram's models build, it comes out as a
SchemaError), and is still a stop, not a failure."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    global terminated_by
    terminated_by = signum
    signal.signal(signum, signal.SIG_DFL)
    raise SystemExit(128 + signum)


def starting_server() -> None:
    """What a server does first. SIGTERM stops it even before aiogram or uvicorn take the signal over (once
    polling or serving starts): as a container's first process, Python ignores SIGTERM it has no handler for, so
    ``docker stop`` of a bot stuck starting (database or Telegram unreachable) waited for SIGKILL. And the heartbeat
    starts now, so a server that never becomes healthy goes stale for the HEALTHCHECK."""
    signal.signal(signal.SIGTERM, _terminate)
    forbid_inspection()
    mark_starting()


PR_SET_DUMPABLE = 4


def forbid_inspection() -> None:
    """Make this process's memory, environment and working directory unreadable to other processes of its user
    (Linux: not "dumpable", so ``/proc/<pid>/environ``, ``mem`` and ``cwd`` belong to root). The servers hold
    the bot token, the API keys and the database's password, and start children that parse users' files
    (``pomogator.services.files.isolated``): without this, a child taken over by a crafted file could read them
    all from its parent. Core dumps, which would hold them too, are off as well. Elsewhere nothing is done."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def run_bot() -> None:
    """Run the Telegram bot (long polling). In webhook mode the web app serves the bot instead."""
    starting_server()
    # Checked before aiogram is imported (seconds of a cold start), so a missing token or webhook mode is said at
    # once.
    settings = settings_for("bot_token", "openrouter_api_key", process="bot")
    if settings.webhook_mode:
        # Polling would take the webhook away from the web app that receives the updates.
        from pomogator.errors import ConfigError

        raise ConfigError(
            "POMOGATOR_TELEGRAM_WEBHOOK_SECRET is set: in webhook mode `pomogator run web` receives the updates "
            "and `pomogator run bot` does not poll. Unset it to poll instead."
        )
    # The bot talks to the model from its first message: the SDK is loaded now, to be frozen with the rest.
    import openai  # noqa: F401

    from pomogator.bot.runner import run_polling

    freeze_start_up_objects()
    asyncio.run(run_polling(settings))


def run_web() -> None:
    """Run the web app: the YooKassa webhook, health checks and, in webhook mode, the Telegram bot."""
    starting_server()
    from pomogator.web.server import serve, web_needs

    settings = settings_for(process="web")
    # Checked before aiogram is imported (webhook mode), as `run bot` does.
    settings.require(*web_needs(settings))
    settings.require_strong_webhook_secret()
    if settings.webhook_mode:
        # The app serves the bot: aiogram, the bot's modules and the SDK are loaded now, to be frozen with the rest
        # (left to the app's start-up they would be walked by every full collection, 0.2-0.3 s each).
        import openai  # noqa: F401

        import pomogator.bot.webhook  # noqa: F401
    freeze_start_up_objects()
    serve(settings)
