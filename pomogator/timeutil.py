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
    return end_of_day(local_day(moment, tz), tz)


def end_of_day(day: date, tz: ZoneInfo) -> datetime:
    """The midnight that ends ``day`` in ``tz``, as a UTC-aware datetime."""
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=tz).astimezone(UTC)


def as_utc(moment: datetime | str) -> datetime:
    """Normalise a value read from the database to UTC-aware (SQLite aggregates return ISO text)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
