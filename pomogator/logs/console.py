"""The stderr sink: one human-readable line per record, or one JSON object per line."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, TextIO

from pomogator.logs.records import context_of, logger_name, process_of

if TYPE_CHECKING:
    from loguru import Message, Record

    from pomogator.logs.redact import Redactor

RESET = "\x1b[0m"
LEVEL_COLORS = {
    "TRACE": "\x1b[36m",
    "DEBUG": "\x1b[34m",
    "INFO": "\x1b[1m",
    "SUCCESS": "\x1b[32m",
    "WARNING": "\x1b[33m",
    "ERROR": "\x1b[31m",
    "CRITICAL": "\x1b[1;41m",
}


class ConsoleSink:
    """A loguru sink writing to a text stream. It renders (and redacts) exceptions itself, so loguru's raw
    traceback text never reaches the stream."""

    def __init__(self, stream: TextIO, redactor: Redactor, *, json_lines: bool = False, colorize: bool = False) -> None:
        self._stream = stream
        self._redactor = redactor
        self._json = json_lines
        self._colorize = colorize and not json_lines

    def write(self, message: Message) -> None:
        record = message.record
        line = self.json_line(record) if self._json else self.human_line(record)
        self._stream.write(line + "\n")
        self._stream.flush()

    def _exception(self, record: Record) -> str | None:
        exception = record["exception"]
        return self._redactor.exception(exception) if exception is not None else None

    def human_line(self, record: Record) -> str:
        level = record["level"].name
        level_text = f"{level:<8}"
        if self._colorize:
            level_text = f"{LEVEL_COLORS.get(level, '')}{level_text}{RESET}"
        context = " ".join(f"{key}={value}" for key, value in self._redactor.mapping(context_of(record)).items())
        line = (
            f"{record['time']:%Y-%m-%d %H:%M:%S}.{record['time'].microsecond // 1000:03d} | {level_text} | "
            f"{process_of(record)} | {logger_name(record)}:{record['function']}:{record['line']} - "
            f"{self._redactor.text(record['message'])}"
        )
        if context:
            line += f" | {context}"
        exception = self._exception(record)
        if exception:
            line += "\n" + exception
        return line

    def json_line(self, record: Record) -> str:
        data = {
            "time": record["time"].isoformat(),
            "level": record["level"].name,
            "process": process_of(record),
            "logger": logger_name(record),
            "function": record["function"],
            "line": record["line"],
            "message": self._redactor.text(record["message"]),
            "context": self._redactor.mapping(context_of(record)),
            "exception": self._exception(record),
        }
        return json.dumps(data, ensure_ascii=False, default=str)
