"""``pomogator bot set-webhook`` refuses an address the bot would be deaf at, before asking Telegram; the commands
reach the Bot API directly, whatever proxy variables say."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cli.helpers import clean_env, run_cli
from tests.fakes.telegram_server import FakeTelegram

TOKEN = "4242:webhook-checks"
SECRET = "webhook-checks-secret-0123456789abcdefghijklmnopqrstuv"


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN, webhook_auto_deliver=False) as fake:
        yield fake


def env_for(tg: FakeTelegram, **extra: str) -> dict[str, str]:
    values = {
        "POMOGATOR_BOT_TOKEN": TOKEN,
        "POMOGATOR_TELEGRAM_API_URL": tg.base_url,
        "POMOGATOR_TELEGRAM_WEBHOOK_SECRET": SECRET,
    }
    return clean_env(**{**values, **extra})


async def test_a_path_the_web_app_does_not_serve_needs_force(tg: FakeTelegram, tmp_path: Path) -> None:
    url = "https://bot.example.com/wrong"
    refused = await run_cli("bot", "set-webhook", url, cwd=tmp_path, env=env_for(tg))
    assert refused.code == 2, refused.stderr
    assert "/webhooks/telegram" in refused.stderr and "--force" in refused.stderr
    assert tg.webhook is None

    forced = await run_cli("bot", "set-webhook", url, "--force", cwd=tmp_path, env=env_for(tg))
    assert forced.code == 0, forced.stderr
    assert tg.webhook is not None and tg.webhook["url"] == url


@pytest.mark.parametrize(
    "url",
    [
        "http://bot.example.com/webhooks/telegram",
        "ftp://bot.example.com/webhooks/telegram",
        "bot.example.com/webhooks/telegram",
        "https:///webhooks/telegram",
        "https://[::1/webhooks/telegram",
    ],
)
async def test_telegrams_servers_get_https_addresses_only(tg: FakeTelegram, tmp_path: Path, url: str) -> None:
    env = env_for(tg, POMOGATOR_TELEGRAM_API_URL="https://api.telegram.org")  # refused before any call
    result = await run_cli("bot", "set-webhook", url, "--force", cwd=tmp_path, env=env)
    assert result.code == 2, result.stderr
    assert "https://" in result.stderr and "Traceback" not in result.stderr
    assert tg.webhook is None


async def test_a_local_bot_api_server_takes_http_addresses_too(tg: FakeTelegram, tmp_path: Path) -> None:
    # A local Bot API server delivers to any address and port, over http as well (core.telegram.org/bots/api).
    url = "http://10.0.0.5:8080/webhooks/telegram"
    result = await run_cli("bot", "set-webhook", url, cwd=tmp_path, env=env_for(tg))
    assert result.code == 0, result.stderr
    assert tg.webhook is not None and tg.webhook["url"] == url
    ftp = await run_cli("bot", "set-webhook", "ftp://10.0.0.5/webhooks/telegram", cwd=tmp_path, env=env_for(tg))
    assert ftp.code == 2 and "http://" in ftp.stderr


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_proxy_variables_are_not_read(tg: FakeTelegram, tmp_path: Path) -> None:
    """They are the model client's (docs/deploy.md): a proxy there would have refused the connection."""
    proxy = f"http://127.0.0.1:{closed_port()}"
    proxies = {name: proxy for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy")}
    env = {k: v for k, v in env_for(tg, **proxies).items() if k.upper() != "NO_PROXY"}
    result = await run_cli("bot", "webhook-info", "--json", cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    assert '"url"' in result.stdout
