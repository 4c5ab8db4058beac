"""Polling and webhook mode as the processes see them: which command serves the bot, what loads aiogram, and the
bot's heartbeat for the container HEALTHCHECK."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from pomogator import console, servers
from pomogator.bot.liveness import POLL_STALE_AFTER_S, PollWatch
from pomogator.heartbeat import STALE_AFTER_S, is_healthy
from tests.bot.harness import BotHarness
from tests.cli.helpers import POMOGATOR, clean_env, run_cli
from tests.conftest import make_settings

SECRET = "deploy-test-secret-0123456789abcdefghijklmnopqrstuv"


def imported(stderr: str) -> set[str]:
    """The top-level packages a ``python -X importtime`` run lists."""
    return {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in stderr.splitlines() if "|" in line}


def imports_aiogram(stderr: str) -> bool:
    return "aiogram" in imported(stderr)


@pytest.mark.parametrize(
    "args",
    [("--help",), ("bot", "--help"), ("user", "show", "1", "--json")],
    ids=["help", "bot-help", "user-show"],
)
async def test_the_cli_does_not_load_aiogram(tmp_path: Path, args: tuple[str, ...]) -> None:
    env = clean_env(POMOGATOR_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    await run_cli("db", "migrate", cwd=tmp_path, env=env)
    if args[0] == "user":
        await run_cli("user", "grant-premium", "1", "--days", "1", cwd=tmp_path, env=env)
    result = await run_cli("-X", "importtime", "-m", "pomogator", *args, cwd=tmp_path, env=env, program=sys.executable)
    assert result.code == 0, result.stderr[-2000:]
    assert not imports_aiogram(result.stderr)
    if args == ("--help",):
        # The top-level help reads no settings: pydantic, for the settings model, stays unloaded (~0.2 s of a cold
        # start here; a command's own help may load it through typer).
        assert "pydantic" not in imported(result.stderr)


@pytest.mark.parametrize("webhook", [False, True], ids=["polling", "webhook"])
async def test_the_web_app_loads_aiogram_only_in_webhook_mode(tmp_path: Path, webhook: bool) -> None:
    env = clean_env(POMOGATOR_BOT_TOKEN="1:x", POMOGATOR_OPENROUTER_API_KEY="k")
    if webhook:
        env["POMOGATOR_TELEGRAM_WEBHOOK_SECRET"] = SECRET
    code = (
        "import sys\n"
        "from pomogator.config import load_settings\n"
        "from pomogator.web.app import create_app\n"
        "app = create_app(load_settings())\n"
        "paths = sorted(route.path for route in app.routes)\n"
        "print(paths, 'aiogram' in sys.modules)\n"
    )
    result = await run_cli("-c", code, cwd=tmp_path, env=env, program=sys.executable)
    assert result.code == 0, result.stderr
    routes, loaded = result.stdout.strip().rsplit(" ", 1)
    assert ("/webhooks/telegram" in routes) is webhook
    # Even in webhook mode aiogram is loaded by the lifespan, when the app starts, not by building it.
    assert loaded == "False"


async def test_the_web_app_starts_without_the_payment_sdk(tmp_path: Path) -> None:
    # Taking payments; still the yookassa SDK (and requests under it) wait for the first payment.
    env = clean_env(
        POMOGATOR_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        POMOGATOR_YOOKASSA_SHOP_ID="1",
        POMOGATOR_YOOKASSA_SECRET_KEY="s",
        POMOGATOR_REMINDER_INTERVAL_SECONDS="0",
    )
    code = (
        "import asyncio, sys\n"
        "from pomogator.config import load_settings\n"
        "from pomogator.web.app import create_app\n"
        "app = create_app(load_settings())\n"
        "async def main():\n"
        "    async with app.router.lifespan_context(app):\n"
        "        print('yookassa' in sys.modules, 'requests' in sys.modules)\n"
        "asyncio.run(main())\n"
    )
    result = await run_cli("-c", code, cwd=tmp_path, env=env, program=sys.executable)
    assert result.code == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "False"]


async def test_the_bot_loads_neither_the_redis_client_without_redis_nor_billing_before_a_purchase(
    tmp_path: Path,
) -> None:
    """What several instances share goes through Redis only when it is configured: its client (~5.5 MiB of a bot
    process) is not loaded otherwise, polling or serving the webhook. The billing service waits for a /billing
    press."""
    code = (
        "import sys\n"
        "import pomogator.bot.runner, pomogator.bot.webhook\n"
        "from pomogator.bot.shared import open_shared_state\n"
        "print('redis' in sys.modules, 'pomogator.services.billing' in sys.modules)\n"
    )
    result = await run_cli("-c", code, cwd=tmp_path, env=clean_env(), program=sys.executable)
    assert result.code == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "False"]


async def test_run_bot_refuses_to_poll_in_webhook_mode_at_once_without_the_cli_framework(tmp_path: Path) -> None:
    env = clean_env(
        POMOGATOR_BOT_TOKEN="1:x",
        POMOGATOR_OPENROUTER_API_KEY="k",
        POMOGATOR_TELEGRAM_WEBHOOK_SECRET=SECRET,
        POMOGATOR_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        PYTHONPROFILEIMPORTTIME="1",
    )
    result = await run_cli("run", "bot", cwd=tmp_path, env=env)
    assert result.code == 1
    assert "POMOGATOR_TELEGRAM_WEBHOOK_SECRET" in result.stderr and "run web" in result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr
    # Refused once the settings were read (pydantic), by the server's own start-up without the CLI framework, and
    # before aiogram (seconds of a cold start) was loaded.
    modules = imported(result.stderr)
    assert "pydantic" in modules
    assert not {"typer", "click", "aiogram"} & modules
    # With anything more on the command line it is the CLI's: its help, for one.
    helped = await run_cli("run", "bot", "--help", cwd=tmp_path, env=clean_env())
    assert helped.code == 0
    assert "long polling" in helped.stdout


async def test_run_web_in_webhook_mode_needs_the_openrouter_key(tmp_path: Path) -> None:
    env = clean_env(
        POMOGATOR_BOT_TOKEN="1:x",
        POMOGATOR_YOOKASSA_SHOP_ID="1",
        POMOGATOR_YOOKASSA_SECRET_KEY="s",
        POMOGATOR_TELEGRAM_WEBHOOK_SECRET=SECRET,
    )
    result = await run_cli("run", "web", cwd=tmp_path, env=env)
    assert result.code == 1
    assert "POMOGATOR_OPENROUTER_API_KEY" in result.stderr


async def test_a_short_webhook_secret_stops_only_the_commands_that_use_it(tmp_path: Path) -> None:
    # A guessable secret would let anybody post updates as any person; other commands (an upgrade's `db migrate`)
    # still run while it is replaced.
    short = "only-thirty-one-characters-long"
    env = clean_env(
        POMOGATOR_BOT_TOKEN="1:x",
        POMOGATOR_OPENROUTER_API_KEY="k",
        POMOGATOR_TELEGRAM_WEBHOOK_SECRET=short,
        POMOGATOR_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    web = await run_cli("run", "web", cwd=tmp_path, env=env)
    assert web.code == 1
    assert "too short to be safe: use at least 32 characters" in web.stderr
    assert short not in web.stderr and "Traceback" not in web.stderr
    migrated = await run_cli("db", "migrate", cwd=tmp_path, env=env)
    assert migrated.code == 0, migrated.stderr


@pytest.mark.parametrize("secret", ["has space", "x" * 257, "semi;colon"])
def test_a_webhook_secret_telegram_would_refuse_is_a_config_error(secret: str) -> None:
    with pytest.raises(ValidationError):
        make_settings(telegram_webhook_secret=secret)


def test_an_empty_webhook_secret_means_polling() -> None:
    assert not make_settings(telegram_webhook_secret="").webhook_mode
    assert make_settings(telegram_webhook_secret=SECRET).webhook_mode


def test_the_poll_watch_goes_stale_without_polls() -> None:
    watch = PollWatch()
    assert watch.polling()
    watch.last_poll = time.monotonic() - POLL_STALE_AFTER_S - 1
    assert not watch.polling()


@pytest.mark.slow
async def test_the_polling_bot_keeps_the_heartbeat_fresh(tmp_path: Path) -> None:
    beat = tmp_path / "heartbeat"
    async with BotHarness.open(tmp_path, env={"POMOGATOR_HEARTBEAT_FILE": str(beat)}) as h:
        await h.tg.wait_until(beat.exists, 15, "the heartbeat file")
        checked = await run_cli("healthcheck", cwd=tmp_path, env=clean_env(POMOGATOR_HEARTBEAT_FILE=str(beat)))
        assert checked.code == 0
        assert await h.bot.stop() == 0
    assert not beat.exists()


@pytest.mark.parametrize("command", ["bot", "web"])
async def test_a_server_stuck_starting_stops_on_sigterm_and_its_heartbeat_goes_stale(
    tmp_path: Path, command: str
) -> None:
    # Telegram accepts connections and never answers: the bot waits for getMe; the web app (webhook mode) too.
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    telegram = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = telegram.sockets[0].getsockname()[1]
    beat = tmp_path / "heartbeat"
    env = clean_env(
        POMOGATOR_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        POMOGATOR_BOT_TOKEN="123:ABC",
        POMOGATOR_TELEGRAM_API_URL=f"http://127.0.0.1:{port}",
        POMOGATOR_OPENROUTER_API_KEY="sk-test",
        POMOGATOR_HEARTBEAT_FILE=str(beat),
        POMOGATOR_YOOKASSA_SHOP_ID="123",
        POMOGATOR_YOOKASSA_SECRET_KEY="test_secret",
        POMOGATOR_WEB_PORT="0",
    )
    if command == "web":
        env["POMOGATOR_TELEGRAM_WEBHOOK_SECRET"] = SECRET
    async with telegram:
        process = await asyncio.create_subprocess_exec(
            POMOGATOR,
            "run",
            command,
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            # The heartbeat exists from the start: it goes stale unless the server becomes healthy and refreshes it.
            for _ in range(300):
                if beat.exists():
                    break
                await asyncio.sleep(0.1)
            assert beat.exists()
            assert not is_healthy(beat, now=beat.stat().st_mtime + STALE_AFTER_S + 1)
            await asyncio.sleep(2)  # well into start-up: loading aiogram, then waiting for Telegram
            process.send_signal(signal.SIGTERM)
            # Exits by its own handler (a container's first process ignores a SIGTERM it has no handler for; killed by
            # the default action the code would be -15).
            assert await asyncio.wait_for(process.wait(), 30) == 128 + signal.SIGTERM
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


def test_sigterm_arriving_inside_a_library_that_wraps_its_exit_still_stops_with_143(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The handler's SystemExit raised while pydantic-core builds aiogram's models comes out as a SchemaError: a
    # stop all the same, not "unexpected failure" with exit 1 and a traceback file.
    def start_then_terminated() -> None:
        try:
            servers._terminate(signal.SIGTERM, None)
        except SystemExit as exit_:
            raise RuntimeError("a library's own error around the exit") from exit_

    monkeypatch.setattr(servers, "terminated_by", None)
    monkeypatch.setitem(console.SERVERS, ("run", "web"), start_then_terminated)
    monkeypatch.setattr(sys, "argv", ["pomogator", "run", "web"])
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as stopped:
            console.main()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 128 + signal.SIGTERM
