"""Route the standard library's logging (aiogram, uvicorn, asyncpg, httpx, openai) and Python's warnings into
loguru."""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

# The logger name warnings are recorded under (the stdlib's ``logging.captureWarnings`` uses it too).
WARNINGS_LOGGER = "py.warnings"
# Python's own way of showing warnings, put back by ``stop_intercepting``.
_original_showwarning = warnings.showwarning

# Servers that may have been given handlers of their own; their records should reach the root logger instead.
PROPAGATING_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
# Libraries that say something at INFO on every start, request or update (piccolo's version check, the request lines
# of httpx and of httpx2, which the openai SDK uses, aiogram's "Update id=... is handled"): a sink keeps only their
# warnings and errors unless its own level is DEBUG (``quiet_chatty``). At INFO each of these lines would also become
# a row of the log table: POMOGATOR_LOG_LEVEL=DEBUG shows them on stderr, not in the table.
CHATTY_LOGGERS = ("piccolo", "httpx", "httpx2", "httpcore", "aiogram.event")
# Libraries kept to their warnings and errors even at DEBUG: aiosqlite logs every statement with its parameters (names,
# receipt e-mails: personal data), Pillow's image plugins every EXIF tag with its value (where a photo was taken) and
# every PNG chunk, markdown-it about ten lines for each render of a streamed answer.
QUIET_LOGGERS = ("aiosqlite", "PIL", "markdown_it")
_CHATTY_CHILDREN = tuple(f"{name}." for name in CHATTY_LOGGERS)


class InterceptHandler(logging.Handler):
    """The loguru recipe: re-log each stdlib record through loguru, keeping the caller and the logger's name."""

    def emit(self, record: logging.LogRecord) -> None:
        level: str | int
        try:
            level = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno

        # Find the frame that called logging, so loguru reports the library's function and line.
        frame, depth = inspect.currentframe(), 0
        while frame is not None:
            filename = frame.f_code.co_filename
            is_logging = filename == logging.__file__
            is_frozen = "importlib" in filename and "_bootstrap" in filename
            if depth > 0 and not (is_logging or is_frozen):
                break
            frame = frame.f_back
            depth += 1

        name = record.name

        def set_name(loguru_record: Record) -> None:
            loguru_record["name"] = name

        message, exc_info = record.getMessage(), record.exc_info
        outage = _outage(exc_info[1]) if exc_info else None
        if outage is not None:
            # A library's record of the database being away (asyncpg's pool reconnecting in the background, once a
            # second during an outage): one line, not a traceback each time.
            message, exc_info = f"{message} ({outage})", None
        logger.patch(set_name).opt(depth=depth, exception=exc_info).log(level, "{}", message)


def _outage(exc: BaseException | None) -> str | None:
    """What an exception that says the database could not be reached says, or None."""
    if exc is None:
        return None
    from pomogator.store.outage import outage_of

    outage = outage_of(exc)
    return None if outage is None else f"the database is unavailable: {outage.detail}"


def is_chatty(record: Record) -> bool:
    """Whether ``record`` is one of ``CHATTY_LOGGERS``' below WARNING."""
    name = record["name"] or ""
    return record["level"].no < logging.WARNING and (name in CHATTY_LOGGERS or name.startswith(_CHATTY_CHILDREN))


def quiet_chatty(level: int) -> Callable[[Record], bool] | None:
    """The filter of a sink at ``level``: it drops ``CHATTY_LOGGERS``' records below WARNING unless ``level`` is
    DEBUG or lower (None: nothing to drop)."""
    if level <= logging.DEBUG:
        return None
    return lambda record: not is_chatty(record)


def intercept_stdlib(level: int) -> None:
    """Make the root logger hand records at ``level`` (the lowest of the sinks' levels) and above to loguru
    (idempotent). Each sink drops the chatty libraries' records itself (``quiet_chatty``); the quiet ones never get
    past the standard library below WARNING."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, InterceptHandler):
            root.removeHandler(handler)
    root.addHandler(InterceptHandler())
    root.setLevel(level)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if level <= logging.DEBUG else max(level, logging.WARNING))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    for name in PROPAGATING_LOGGERS:
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` as a WARNING record of one line (aiogram's "Detected unknown update type", over
    three lines and a line of source code, went raw to stderr: past the redaction, and not a JSON line with
    ``POMOGATOR_LOG_JSON``). The warnings filters still decide what is shown: by default each warning once."""
    text = " ".join(part.strip() for part in str(message).splitlines() if part.strip())

    def set_place(record: Record) -> None:
        record["name"] = WARNINGS_LOGGER
        # Where the warning points, as a library's path from its package ("aiogram/dispatcher/event/handler.py").
        record["function"] = filename.rpartition("site-packages/")[2]
        record["line"] = lineno

    logger.patch(set_place).warning("{}: {}", category.__name__, text)


def intercept_warnings() -> None:
    """Show Python's warnings as log records (idempotent)."""
    warnings.showwarning = show_warning


def stop_intercepting() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, InterceptHandler):
            root.removeHandler(handler)
    warnings.showwarning = _original_showwarning
