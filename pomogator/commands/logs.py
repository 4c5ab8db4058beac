"""``pomogator logs``: show and prune the log records stored in the database."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from pomogator import cli_output
from pomogator.commands import MAX_ROWS, TELEGRAM_ID_MAX, TELEGRAM_ID_MIN, sub_app
from pomogator.logs.records import LEVELS

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from pomogator.container import Services
    from pomogator.logs.store import StoredLog

app = sub_app("Log records stored in the database.")

COLUMNS = ("id", "time", "level", "process", "user", "logger", "message")
AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
AGE = re.compile(r"(\d+)\s*([smhdw])")
# A century: older than any record, and well within how far back from now a date can go.
MAX_AGE = timedelta(days=36_500)


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``2w``, ``90m``, ``45s`` or a combination such as ``1d12h``."""
    value = text.strip().lower()
    parts = AGE.findall(value)
    if not value or "".join(f"{n}{u}" for n, u in parts) != value.replace(" ", ""):
        raise ValueError(f"{text!r} is not an age; use a number and a unit (s, m, h, d, w), e.g. 30d, 12h, 2w")
    seconds = sum(int(number) * AGE_UNITS[unit] for number, unit in parts)
    if not seconds:
        raise ValueError("the age must be more than zero")
    if seconds > MAX_AGE.total_seconds():
        raise ValueError(f"the age must be at most {MAX_AGE.days}d")
    return timedelta(seconds=seconds)


def _row(record: StoredLog, tz: ZoneInfo) -> tuple[object, ...]:
    message = record.message
    # The exception's last line names it ("RuntimeError: boom"); a blank one adds nothing.
    exception = (record.exception or "").strip().splitlines()
    if exception:
        message += " | " + exception[-1]
    return (
        record.id,
        record.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
        record.level,
        record.process,
        record.telegram_id,
        record.logger,
        message,
    )


def _json_line(record: StoredLog) -> str:
    data = {
        "id": record.id,
        "time": record.created_at.isoformat(),
        "level": record.level,
        "process": record.process,
        "logger": record.logger,
        "telegram_id": record.telegram_id,
        "message": record.message,
        "context": record.context,
        "exception": record.exception,
    }
    return json.dumps(data, ensure_ascii=False)


def _show(records: list[StoredLog], tz: ZoneInfo, *, as_json: bool, title: str, continued: bool = False) -> None:
    if as_json:
        sys.stdout.write("".join(_json_line(record) + "\n" for record in records))
        sys.stdout.flush()
        return
    # The times are the configured zone's (the JSON lines', like the processes' own log lines, are UTC): said once.
    columns = tuple(f"time ({datetime.now(tz):%Z})" if name == "time" else name for name in COLUMNS)
    cli_output.print_table(title, columns, [_row(record, tz) for record in records], continued=continued)


@app.command("tail")
def tail(
    limit: Annotated[
        int, typer.Option("--limit", "-n", metavar="N", min=1, max=MAX_ROWS, help="Show the last N records.")
    ] = 50,
    level: Annotated[
        str | None, typer.Option(metavar="LEVEL", help=f"Only this level and above: {', '.join(LEVELS)}.")
    ] = None,
    user: Annotated[
        int | None,
        typer.Option(
            metavar="TELEGRAM_ID",
            min=TELEGRAM_ID_MIN,
            max=TELEGRAM_ID_MAX,
            help="Only records about this Telegram user id.",
        ),
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new records until Ctrl-C.")] = False,
    interval: Annotated[
        float, typer.Option(metavar="SECONDS", min=0.1, max=3600, help="Seconds between polls with --follow.")
    ] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per line to stdout.")] = False,
) -> None:
    """Show the newest stored log records, oldest first; with --follow, keep polling for new ones."""
    from pomogator.cli import with_services
    from pomogator.logs.store import FOLLOW_BATCH, latest_log_id, levels_from, recent_logs

    if level is not None:
        try:
            levels_from(level)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--level") from None

    async def fn(services: Services) -> None:
        tz = services.settings.tz
        records = await recent_logs(limit, level=level, telegram_id=user)
        _show(records, tz, as_json=as_json, title="Log records")
        if not follow:
            return
        last = records[-1].id if records else await latest_log_id()
        while True:
            await asyncio.sleep(interval)
            new = await recent_logs(FOLLOW_BATCH, level=level, telegram_id=user, after_id=last)
            if new:
                _show(new, tz, as_json=as_json, title="New log records", continued=True)
                last = new[-1].id

    try:
        with_services(fn)
    except KeyboardInterrupt:
        # Ctrl-C is how --follow ends: quietly, with the exit code every command gives it (as `tail -f` does).
        raise typer.Exit(130) from None


@app.command("prune")
def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", metavar="AGE", help="Delete records older than this: 30d, 12h, 2w.")
    ],
) -> None:
    """Delete stored log records older than the given age."""
    from pomogator.cli import with_services
    from pomogator.logs.store import prune_logs
    from pomogator.timeutil import utcnow

    try:
        age = parse_age(older_than)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--older-than") from None

    async def fn(services: Services) -> int:
        return await prune_logs(utcnow() - age)

    deleted = with_services(fn)
    cli_output.notice(f"Deleted {deleted} log records older than {older_than}.")
