"""``pomogator usage`` as an operator runs it: what the models cost, per model and per user."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from pomogator.store.engine import open_database
from pomogator.store.tables import LLMRequest
from tests.cli.helpers import clean_env, run_cli
from tests.services.test_usage import request


async def store(db_url: str) -> None:
    async with open_database(db_url, migrate=True):
        await LLMRequest.insert(
            request(501, "big/model", "0.25"),
            request(501, "small/model", "0.0001"),
            request(502, "small/model", None),
            request(None, "big/model", "0.5"),
            request(503, "big/model", "9", ago=timedelta(days=3)),
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
        "prompt_tokens": 400,
        "completion_tokens": 40,
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
    assert lines[1].split("\t") == ["big/model", "3", "0", "300", "30", "9.750000"]
    assert lines[3].split("\t") == ["total", "5", "0", "500", "50", "9.750100"]
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
