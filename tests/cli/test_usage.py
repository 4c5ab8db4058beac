"""``pomogator usage`` as an operator runs it: what the models cost, per model and per user."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from pomogator.store.engine import open_database
from pomogator.store.tables import LLMRequest
from pomogator.timeutil import utcnow
from tests.cli.helpers import clean_env, run_cli


async def store(db_url: str) -> None:
    now = utcnow()

    def row(who: int | None, model: str, cost: str | None, days_ago: float = 0.1) -> LLMRequest:
        return LLMRequest(
            telegram_id=who,
            model=model,
            prompt_tokens=1000,
            completion_tokens=200,
            cost=None if cost is None else Decimal(cost),
            status="ok",
            created_at=now - timedelta(days=days_ago),
        )

    async with open_database(db_url, migrate=True):
        await LLMRequest.insert(
            row(501, "big/model", "0.25"),
            row(501, "small/model", "0.0001"),
            row(502, "small/model", None),
            row(None, "big/model", "0.5"),
            row(503, "big/model", "9", days_ago=3),
        )


async def test_the_report_of_the_last_days(tmp_path: Path, db_url: str) -> None:
    await store(db_url)
    env = clean_env(POMOGATOR_DATABASE_URL=db_url)

    result = await run_cli("usage", "--days", "2", "--json", cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["total"] == {
        "requests": 4,
        "stopped": 0,
        "prompt_tokens": 4000,
        "completion_tokens": 800,
        "cost": "0.75010000",
        "unpriced": 1,
    }
    assert [(m["model"], m["requests"], m["cost"]) for m in report["models"]] == [
        ("big/model", 2, "0.75000000"),
        ("small/model", 2, "0.00010000"),
    ]
    assert [(u["telegram_id"], u["cost"]) for u in report["users"]] == [
        (None, "0.50000000"),
        (501, "0.25010000"),
        (502, "0.00000000"),
    ]

    # Piped, the tables are tab-separated lines: the models with their total, then the costliest users.
    table = await run_cli("usage", "--days", "7", "--top", "1", cwd=tmp_path, env=env)
    assert table.code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split("\t") == ["model", "requests", "stopped", "tokens in", "tokens out", "cost, $"]
    assert lines[1].split("\t") == ["big/model", "3", "0", "3000", "600", "9.7500"]
    assert lines[3].split("\t") == ["total", "5", "0", "5000", "1000", "9.7501"]
    assert lines[5].split("\t")[:2] == ["503", "1"]
    assert len(lines) == 6
    assert "1 of the requests had no cost reported" in table.stderr

    one = json.loads((await run_cli("usage", "--user", "501", "--json", cwd=tmp_path, env=env)).stdout)
    assert (one["user"], one["total"]["requests"], one["total"]["cost"], one["users"]) == (501, 2, "0.25010000", [])


async def test_a_period_that_is_not_one(tmp_path: Path, db_url: str) -> None:
    await store(db_url)
    result = await run_cli("usage", "--days", "0", cwd=tmp_path, env=clean_env(POMOGATOR_DATABASE_URL=db_url))
    assert result.code == 2
    assert "--days" in result.stderr and "Traceback" not in result.stderr
