"""Reading and pruning the stored log records."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from piccolo.columns.combination import And, Where

from pomogator.logs.records import LEVELS
from pomogator.store.tables import LogRecord
from pomogator.timeutil import as_utc

FOLLOW_BATCH = 1000


@dataclass(frozen=True, slots=True)
class StoredLog:
    id: int
    created_at: datetime
    level: str
    process: str
    logger: str
    message: str
    telegram_id: int | None = None
    exception: str | None = None
    context: dict[str, Any] = field(default_factory=dict)


def levels_from(level: str) -> list[str]:
    """``level`` and the levels above it; ValueError for a name that is not a level."""
    name = level.strip().upper()
    if name not in LEVELS:
        raise ValueError(f"unknown level {level!r}; one of {', '.join(LEVELS)}")
    return list(LEVELS[LEVELS.index(name) :])


def _conditions(level: str | None, telegram_id: int | None, after_id: int | None) -> And | Where | None:
    conditions: list[Where] = []
    if level is not None:
        conditions.append(LogRecord.level.is_in(levels_from(level)))
    if telegram_id is not None:
        conditions.append(LogRecord.telegram_id == telegram_id)
    if after_id is not None:
        conditions.append(LogRecord.id > after_id)
    if not conditions:
        return None
    combined: And | Where = conditions[0]
    for condition in conditions[1:]:
        combined = And(combined, condition)
    return combined


def _stored(row: dict[str, Any]) -> StoredLog:
    context = row["context"]
    if isinstance(context, str):
        try:
            context = json.loads(context) if context else {}
        except ValueError:
            context = {"raw": context}
    return StoredLog(
        id=row["id"],
        created_at=as_utc(row["created_at"]),
        level=row["level"],
        process=row["process"],
        logger=row["logger"],
        message=row["message"],
        telegram_id=row["telegram_id"],
        exception=row["exception"],
        context=context if isinstance(context, dict) else {"value": context},
    )


async def recent_logs(
    limit: int, *, level: str | None = None, telegram_id: int | None = None, after_id: int | None = None
) -> list[StoredLog]:
    """Records matching the filters, oldest first: the newest ``limit`` of them, or (with ``after_id``) the first
    ``limit`` ones written after that id."""
    query = LogRecord.select()
    where = _conditions(level, telegram_id, after_id)
    if where is not None:
        query = query.where(where)
    if after_id is None:
        rows = await query.order_by(LogRecord.id, ascending=False).limit(limit)
        rows.reverse()
    else:
        rows = await query.order_by(LogRecord.id).limit(limit)
    return [_stored(row) for row in rows]


async def prune_logs(before: datetime) -> int:
    """Delete records created before ``before``; returns how many there were. No transaction: on SQLite one would
    cost the process a connection and a thread of its own (0.25 MiB of a bot's idle memory, as the bot prunes at
    start), and nothing writes records that old, so only a prune running at the same moment in another process can
    make the count more than this one deleted."""
    cutoff = as_utc(before)
    count: int = await LogRecord.count().where(LogRecord.created_at < cutoff)
    if count:
        await LogRecord.delete().where(LogRecord.created_at < cutoff)
    return count


async def latest_log_id() -> int:
    """The id of the newest stored record, 0 when there is none."""
    rows = await LogRecord.select(LogRecord.id).order_by(LogRecord.id, ascending=False).limit(1)
    return int(rows[0]["id"]) if rows else 0
