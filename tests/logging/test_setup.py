"""Per-process set-up: the stderr sink, levels, stdlib interception."""

from __future__ import annotations

import inspect
import io
import json
import logging
import re
import warnings

import pytest
from loguru import logger

from pomogator.config import Settings
from pomogator.errors import ConfigError
from pomogator.logging import setup_logging
from tests.conftest import make_settings

LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| (?P<level>\w+) *\| (?P<process>\w+) \| (?P<where>\S+) - (?P<rest>.*)$"
)


def configured(process: str = "bot", **overrides: object) -> io.StringIO:
    stream = io.StringIO()
    settings: Settings = make_settings(**{"log_level": "INFO", **overrides})
    setup_logging(settings, process, stream=stream)
    return stream


def test_human_lines_say_when_what_where_and_whose() -> None:
    stream = configured()
    with logger.contextualize(user_id=42, update_id=7):
        call_line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
        logger.info("hello")
    logger.debug("too detailed")
    (line,) = stream.getvalue().splitlines()
    match = LINE.match(line)
    assert match is not None, line
    assert match["level"] == "INFO"
    assert match["process"] == "bot"
    assert match["where"] == f"{__name__}:test_human_lines_say_when_what_where_and_whose:{call_line}"
    assert match["rest"] == "hello | user_id=42 update_id=7"


def test_stdlib_loggers_reach_loguru_with_their_names() -> None:
    stream = configured("web")
    logging.getLogger("aiogram.event").warning("Update id=%s is not handled", 5)
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    logging.getLogger("some.library").debug("below the level")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "| WARNING  | web | aiogram.event:" in lines[0]
    assert lines[0].endswith("- Update id=5 is not handled")
    assert "| INFO     | web | uvicorn.error:" in lines[1]


def test_chatty_libraries_are_quiet_unless_debugging() -> None:
    stream = configured()
    logging.getLogger("httpx").info("HTTP Request: POST https://openrouter.ai/api/v1/chat/completions")
    logging.getLogger("httpx").warning("retrying")
    assert [line.rsplit(" - ", 1)[1] for line in stream.getvalue().splitlines()] == ["retrying"]

    stream = configured(log_level="DEBUG")
    logging.getLogger("httpx").info("HTTP Request: POST https://openrouter.ai/api/v1/chat/completions")
    assert "HTTP Request" in stream.getvalue()


def test_each_sink_keeps_the_chatty_libraries_quiet_unless_its_own_level_is_debug() -> None:
    """The database sink at DEBUG lets the standard library pass their records on: stderr at INFO still drops them."""
    stream = configured(log_db_level="DEBUG")
    logging.getLogger("aiogram.event").info("Update id=7 is handled")
    logging.getLogger("httpcore.http11").debug("send_request_headers.started")
    logging.getLogger("aiogram.event").warning("Update id=8 is not handled")
    assert [line.rsplit(" - ", 1)[1] for line in stream.getvalue().splitlines()] == ["Update id=8 is not handled"]


def test_some_libraries_are_quiet_even_at_debug() -> None:
    """aiosqlite logs every statement with its parameters (personal data), Pillow EXIF tags with their values,
    markdown-it a dozen lines for every render of a streamed answer."""
    stream = configured(log_level="DEBUG")
    logging.getLogger("aiosqlite").debug("executing partial(execute, 'INSERT INTO users ...', ['Иван', 'a@b.ru'])")
    logging.getLogger("PIL.TiffImagePlugin").debug("Tag 34853, Type: 4, Value: (55.75, 37.61)")
    logging.getLogger("markdown_it.rules_block.code").debug("entering code: StateBlock(line=0,level=0,tokens=0)")
    logging.getLogger("aiosqlite").warning("iterdump completed unexpectedly")
    logging.getLogger("aiogram.event").debug("a debugging line of a chatty library")
    lines = [line.rsplit(" - ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines == ["iterdump completed unexpectedly", "a debugging line of a chatty library"]


def test_uvicorn_handlers_are_replaced_by_propagation() -> None:
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.addHandler(logging.StreamHandler(io.StringIO()))
    uvicorn_error.propagate = False
    stream = configured("web")
    uvicorn_error.warning("from uvicorn")
    assert uvicorn_error.handlers == []
    assert "from uvicorn" in stream.getvalue()


def test_setting_up_again_replaces_the_previous_configuration() -> None:
    first = configured("cli")
    second = configured("bot")
    logging.getLogger("aiogram").warning("once")
    logger.warning("twice")
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 2


def test_unknown_levels_are_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="POMOGATOR_LOG_LEVEL"):
        configured(log_level="LOUD")
    with pytest.raises(ConfigError, match="POMOGATOR_LOG_DB_LEVEL"):
        configured(log_db_level="LOUD")


def test_python_warnings_are_one_redacted_record_each() -> None:
    """aiogram's "Detected unknown update type" warning is three lines and a line of source code: it comes out as one
    log record (one JSON line with POMOGATOR_LOG_JSON), redacted like every other."""
    token = "123456:AAsecretTokenValue"
    stream = configured("web", log_json=True, bot_token=token)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(
            f"Detected unknown update type.\nSeems like Telegram Bot API was updated\nUpdate: {token}",
            RuntimeWarning,
            stacklevel=1,
        )
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "WARNING"
    assert record["logger"] == "py.warnings"
    assert record["message"] == (
        "RuntimeWarning: Detected unknown update type. Seems like Telegram Bot API was updated Update: ***"
    )
    assert record["function"] == __file__ and record["line"] > 0
