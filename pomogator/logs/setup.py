"""Per-process set-up: stderr sink, redaction patcher and stdlib interception, configured once at an entry point."""

from __future__ import annotations

import sys
from typing import TextIO

from loguru import logger

from pomogator.config import Settings
from pomogator.errors import ConfigError
from pomogator.logs.console import ConsoleSink
from pomogator.logs.intercept import intercept_stdlib, intercept_warnings, quiet_chatty
from pomogator.logs.redact import Redactor

DB_LEVEL_OFF = "OFF"


def level_number(name: str, setting: str) -> int:
    """The numeric severity of a loguru level name (``INFO``, ``warning``...); ConfigError for unknown names."""
    try:
        return logger.level(name.strip().upper()).no
    except ValueError:
        raise ConfigError(f"POMOGATOR_{setting.upper()}: unknown log level {name!r}") from None


def db_level_number(settings: Settings) -> int | None:
    """The level of the database sink, or None when ``POMOGATOR_LOG_DB_LEVEL=OFF``."""
    if settings.log_db_level.strip().upper() == DB_LEVEL_OFF:
        return None
    return level_number(settings.log_db_level, "log_db_level")


def setup_logging(settings: Settings, process: str, *, stream: TextIO | None = None) -> None:
    """Configure loguru for this process: records go to stderr (JSON lines with ``POMOGATOR_LOG_JSON=1``),
    secrets are redacted in every sink, and stdlib logging and Python's warnings are routed into loguru.

    Call it once at the entry point, before ``build_services`` (which adds the database sink); calling it again
    replaces the configuration. ``stream`` replaces stderr (tests).
    """
    level = level_number(settings.log_level, "log_level")
    db_level = db_level_number(settings)
    redactor = Redactor.from_settings(settings)
    out = stream if stream is not None else sys.stderr
    logger.remove()
    logger.configure(patcher=redactor.patch, extra={"process": process})
    sink = ConsoleSink(out, redactor, json_lines=settings.log_json, colorize=_isatty(out))
    logger.add(sink.write, level=level, filter=quiet_chatty(level), format="{message}", backtrace=False, diagnose=False)
    # Library records below both sinks' levels are dropped by the stdlib before any work is done on them.
    intercept_stdlib(min(level, db_level) if db_level is not None else level)
    intercept_warnings()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
