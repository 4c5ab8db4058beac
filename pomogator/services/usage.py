"""What the models cost: every answered request is kept in ``llm_requests`` with the tokens and the cost OpenRouter
reported for it (the terminal chat's under no user); this sums them per model and per user over a period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pomogator.store.engine import raw
from pomogator.store.tables import LLMRequest

# The column is numeric(14, 8): costs are kept to the hundred-millionth of a credit.
COST_STEP = Decimal("0.00000001")
TOTALS = (
    "COUNT(*) AS requests, "
    "COALESCE(SUM(CASE WHEN status = 'stopped' THEN 1 ELSE 0 END), 0) AS stopped, "
    "COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens, "
    "COALESCE(SUM(completion_tokens), 0) AS completion_tokens, "
    "COALESCE(SUM(cost), 0) AS cost, "
    "COALESCE(SUM(CASE WHEN cost IS NULL THEN 1 ELSE 0 END), 0) AS unpriced"
)


@dataclass(frozen=True, slots=True)
class UsageLine:
    """Requests of one model, one user (``key``; None for the terminal chat's) or all of them, in a period.
    ``unpriced``: requests OpenRouter reported no cost for, not in ``cost``."""

    key: str | int | None
    requests: int
    stopped: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    unpriced: int


@dataclass(frozen=True, slots=True)
class UsageReport:
    since: datetime
    until: datetime
    telegram_id: int | None
    total: UsageLine
    models: list[UsageLine]
    users: list[UsageLine]
    """The users who cost the most, at most ``top`` of them; empty for one user's report."""


def _line(row: Any, key: str | int | None) -> UsageLine:
    return UsageLine(
        key=key,
        requests=int(row["requests"]),
        stopped=int(row["stopped"]),
        prompt_tokens=int(row["prompt_tokens"]),
        completion_tokens=int(row["completion_tokens"]),
        # PostgreSQL sums a numeric, SQLite the floats it keeps them as.
        cost=Decimal(str(row["cost"])).quantize(COST_STEP),
        unpriced=int(row["unpriced"]),
    )


async def usage_report(
    since: datetime, until: datetime, *, telegram_id: int | None = None, top: int = 10
) -> UsageReport:
    """The requests answered from ``since`` until ``until`` (everyone's, or ``telegram_id``'s): in all, per model and
    per user, the costliest first."""
    where = "WHERE created_at >= {} AND created_at < {}"
    args: list[Any] = [since, until]
    if telegram_id is not None:
        where += " AND telegram_id = {}"
        args.append(telegram_id)
    total = (await raw(LLMRequest, f"SELECT {TOTALS} FROM llm_requests {where}", *args))[0]
    order = "ORDER BY cost DESC, requests DESC, key"
    models = await raw(
        LLMRequest, f"SELECT model AS key, {TOTALS} FROM llm_requests {where} GROUP BY model {order}", *args
    )
    users: list[UsageLine] = []
    if telegram_id is None:
        rows = await raw(
            LLMRequest,
            f"SELECT telegram_id AS key, {TOTALS} FROM llm_requests {where} GROUP BY telegram_id {order} LIMIT {{}}",
            *args,
            top,
        )
        users = [_line(row, None if row["key"] is None else int(row["key"])) for row in rows]
    return UsageReport(
        since=since,
        until=until,
        telegram_id=telegram_id,
        total=_line(total, None),
        models=[_line(row, str(row["key"])) for row in models],
        users=users,
    )
