"""Time helpers: everything is stored UTC-aware and shown in the configured zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    return datetime.now(UTC)


def local_day(moment: datetime, tz: ZoneInfo) -> date:
    return moment.astimezone(tz).date()


def next_midnight(moment: datetime, tz: ZoneInfo) -> datetime:
    """The start of the next calendar day in ``tz``, as a UTC-aware datetime."""
    tomorrow = local_day(moment, tz) + timedelta(days=1)
    return datetime.combine(tomorrow, time(), tzinfo=tz).astimezone(UTC)


def as_utc(moment: datetime | str) -> datetime:
    """Normalise a value read from the database to UTC-aware (SQLite aggregates return ISO text)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
