"""``pomogator bot set-webhook / webhook-info / delete-webhook`` against the fake Bot API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cli.helpers import clean_env, run_cli
from tests.fakes.telegram_server import FakeTelegram

TOKEN = "4242:webhook-cli"
SECRET = "cli-test-secret-0123456789abcdefghijklmnopqrstuv"
URL = "https://bot.example.com/webhooks/telegram"


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN, webhook_auto_deliver=False) as fake:
        yield fake


def env_for(tg: FakeTelegram, **extra: str) -> dict[str, str]:
    return clean_env(POMOGATOR_BOT_TOKEN=TOKEN, POMOGATOR_TELEGRAM_API_URL=tg.base_url, **extra)


async def test_set_inspect_and_delete_the_webhook(tg: FakeTelegram, tmp_path: Path) -> None:
    tg.user_message(1, "waiting")
    env = env_for(tg, POMOGATOR_TELEGRAM_WEBHOOK_SECRET=SECRET)
    result = await run_cli("bot", "set-webhook", URL, "--max-connections", "10", cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    assert tg.webhook is not None
    assert (tg.webhook["url"], tg.webhook["secret_token"], tg.webhook["max_connections"]) == (URL, SECRET, 10)
    assert "message" in (tg.allowed_updates or [])

    info = await run_cli("bot", "webhook-info", "--json", cwd=tmp_path, env=env)
    assert json.loads(info.stdout)["url"] == URL
    table = await run_cli("bot", "webhook-info", cwd=tmp_path, env=env)
    assert URL in table.stdout and "pending updates\t1" in table.stdout
    assert SECRET not in table.stdout + table.stderr

    deleted = await run_cli("bot", "delete-webhook", cwd=tmp_path, env=env_for(tg))
    assert deleted.code == 0, deleted.stderr
    assert tg.webhook is None
    assert len(tg.pending_updates) == 1  # kept unless asked to drop them


async def test_set_webhook_needs_the_secret_and_reports_telegram_refusals(tg: FakeTelegram, tmp_path: Path) -> None:
    missing = await run_cli("bot", "set-webhook", URL, cwd=tmp_path, env=env_for(tg))
    assert missing.code == 1
    assert "POMOGATOR_TELEGRAM_WEBHOOK_SECRET" in missing.stderr

    short = await run_cli(
        "bot", "set-webhook", URL, cwd=tmp_path, env=env_for(tg, POMOGATOR_TELEGRAM_WEBHOOK_SECRET="x")
    )
    assert short.code == 1 and "too short to be safe" in short.stderr
    assert tg.webhook is None

    env = env_for(tg, POMOGATOR_TELEGRAM_WEBHOOK_SECRET=SECRET)
    local = await run_cli("bot", "set-webhook", "ftp://bot.example.com/webhooks/telegram", cwd=tmp_path, env=env)
    assert local.code == 2 and "http" in local.stderr  # refused before Telegram is asked

    refusal = "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
    tg.fail_next("setWebhook", 400, refusal)
    url = "https://bot.example.com:1234/webhooks/telegram"
    refused = await run_cli("bot", "set-webhook", url, cwd=tmp_path, env=env)
    assert refused.code == 1
    assert "ports 80, 88, 443 or 8443" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert tg.webhook is None


async def test_an_unreachable_bot_api_is_one_line(tmp_path: Path) -> None:
    env = clean_env(POMOGATOR_BOT_TOKEN=TOKEN, POMOGATOR_TELEGRAM_API_URL="http://127.0.0.1:9")
    result = await run_cli("bot", "webhook-info", cwd=tmp_path, env=env)
    assert result.code == 1
    assert "not reachable" in result.stderr and "Traceback" not in result.stderr
    assert TOKEN not in result.stderr
