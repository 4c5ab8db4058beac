"""What every sink takes from a loguru record: the logger name, whose request it was, the context."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loguru import Record

# Keys of ``extra`` that have columns/fields of their own rather than living in the context.
PROCESS_KEY = "process"
USER_KEYS = ("user_id", "telegram_id")
UNKNOWN_PROCESS = "unknown"
# loguru's levels, lowest first: what stored records may have, and what `logs tail --level` takes.
LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


def logger_name(record: Record) -> str:
    return record["name"] or record["module"]


def process_of(record: Record) -> str:
    return str(record["extra"].get(PROCESS_KEY) or UNKNOWN_PROCESS)


def context_of(record: Record) -> dict[str, Any]:
    """``extra`` without the process name: what ``logger.contextualize``/``bind`` attached to the record."""
    return {key: value for key, value in record["extra"].items() if key != PROCESS_KEY}


def about(telegram_id: int) -> dict[str, int]:
    """``logger.bind(**about(id))``: a record about this person only (a notice sent to them), filed under them and
    naming no one else, even inside the handling of another person's update (whose ids would otherwise stay in the
    record's context, out of reach of that person's erasure)."""
    return {"user_id": telegram_id, "chat_id": telegram_id}


def telegram_id_of(record: Record) -> int | None:
    """The Telegram user the record is about, from the ``user_id`` (or ``telegram_id``) the frontends bind."""
    for key in USER_KEYS:
        value = record["extra"].get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
    return None
