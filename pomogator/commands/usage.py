"""``pomogator usage``: what the models cost over the last days, per model and per user, from what OpenRouter
reported for each answered request."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pomogator import cli_output
from pomogator.commands import MAX_DAYS, MAX_ROWS, TELEGRAM_ID_MAX, TELEGRAM_ID_MIN

if TYPE_CHECKING:
    from pomogator.container import Services
    from pomogator.services.usage import UsageLine, UsageReport

COLUMNS = ["requests", "stopped", "tokens in", "tokens out", "cost, $"]
TERMINAL = "terminal chat"


def usage(
    days: Annotated[
        int, typer.Option(metavar="DAYS", min=1, max=MAX_DAYS, help="The period: this many days back from now.")
    ] = 7,
    user: Annotated[
        int | None,
        typer.Option(
            "--user",
            metavar="TELEGRAM_ID",
            min=TELEGRAM_ID_MIN,
            max=TELEGRAM_ID_MAX,
            help="Only this Telegram user's requests.",
        ),
    ] = None,
    top: Annotated[
        int, typer.Option(metavar="N", min=1, max=MAX_ROWS, help="How many of the costliest users to list.")
    ] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")] = False,
) -> None:
    """Show the models' usage and cost: requests, tokens and OpenRouter's cost, per model and for the costliest
    users (the terminal chat's requests count under no user)."""
    from pomogator.cli import with_services
    from pomogator.services.usage import usage_report
    from pomogator.timeutil import utcnow

    async def fn(services: Services) -> None:
        until = utcnow()
        report = await usage_report(until - timedelta(days=days), until, telegram_id=user, top=top)
        if as_json:
            sys.stdout.write(json.dumps(_as_json(report, services), ensure_ascii=False) + "\n")
            return
        _print(report, services)

    with_services(fn)


def _cells(line: UsageLine) -> list[object]:
    return [line.requests, line.stopped, line.prompt_tokens, line.completion_tokens, f"{line.cost:.6f}"]


def _who(key: str | int | None) -> str | int:
    return TERMINAL if key is None else key


def _print(report: UsageReport, services: Services) -> None:
    tz = services.settings.tz
    since = report.since.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    until = report.until.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
    whose = f"user {report.telegram_id}" if report.telegram_id is not None else "all users"
    rows = [[line.key, *_cells(line)] for line in report.models]
    rows.append(["total", *_cells(report.total)])
    cli_output.print_table(f"Usage of {whose}, {since} to {until}", ["model", *COLUMNS], rows)
    if report.telegram_id is None and report.users:
        users = [[_who(line.key), *_cells(line)] for line in report.users]
        cli_output.print_table("The costliest users", ["user", *COLUMNS], users)
    if report.total.unpriced:
        cli_output.notice(f"{report.total.unpriced} of the requests had no cost reported; the cost leaves them out.")


def _line_json(line: UsageLine) -> dict[str, Any]:
    return {
        "requests": line.requests,
        "stopped": line.stopped,
        "prompt_tokens": line.prompt_tokens,
        "completion_tokens": line.completion_tokens,
        "cost": f"{line.cost:f}",
        "unpriced": line.unpriced,
    }


def _as_json(report: UsageReport, services: Services) -> dict[str, Any]:
    tz = services.settings.tz
    return {
        "since": report.since.astimezone(tz).isoformat(),
        "until": report.until.astimezone(tz).isoformat(),
        "user": report.telegram_id,
        "total": _line_json(report.total),
        "models": [{"model": line.key, **_line_json(line)} for line in report.models],
        "users": [{"telegram_id": line.key, **_line_json(line)} for line in report.users],
    }
