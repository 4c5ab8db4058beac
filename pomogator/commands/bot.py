"""``pomogator bot``: register, remove and inspect the Telegram webhook (webhook mode).

The calls go to the Bot API through the plain client of the processes without aiogram (``pomogator.notify.BotApi``);
only ``set-webhook`` loads aiogram, to read which update types the bot's handlers use.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pomogator import cli_output
from pomogator.commands import sub_app
from pomogator.errors import PomogatorError

if TYPE_CHECKING:
    from pomogator.config import Settings

app = sub_app("The Telegram webhook (webhook mode).")

WEBHOOK_PATH = "/webhooks/telegram"
REQUEST_TIMEOUT_S = 20.0


class BotApiError(PomogatorError):
    """The Bot API refused a call or could not be reached."""


def used_update_types() -> list[str]:
    """The update types the bot's handlers use (what polling asks for too)."""
    from aiogram import Dispatcher

    from pomogator.bot.handlers import get_routers

    dispatcher = Dispatcher()
    dispatcher.include_routers(*get_routers())
    return dispatcher.resolve_used_update_types()


async def call_bot_api(settings: Settings, method: str, params: dict[str, Any] | None = None) -> Any:
    """Call ``method``; returns its ``result``, raises BotApiError with Telegram's description otherwise."""
    import httpx

    from pomogator.notify import BotApi

    assert settings.bot_token is not None
    try:
        async with BotApi(
            settings.telegram_api_url, settings.bot_token.get_secret_value(), timeout=REQUEST_TIMEOUT_S
        ) as api:
            response = await api.post(method, params or {})
    except httpx.HTTPError as exc:
        where = settings.telegram_api_url
        raise BotApiError(f"The Bot API at {where} is not reachable: {type(exc).__name__}") from None
    try:
        data = response.json()
    except ValueError:
        raise BotApiError(f"The Bot API answered {method} with HTTP {response.status_code}") from None
    if not isinstance(data, dict) or not data.get("ok"):
        description = data.get("description") if isinstance(data, dict) else None
        raise BotApiError(f"Telegram refused {method}: {description or f'HTTP {response.status_code}'}")
    return data.get("result")


def check_webhook_url(url: str, *, force: bool = False, https_only: bool = True) -> None:
    """Refuse, as bad input, a URL Telegram would not deliver to (not https: Telegram's own servers deliver over
    https only, a local Bot API server over http too) or one the web app does not serve (a path not ending in
    WEBHOOK_PATH, unless ``force``): either would leave the bot deaf."""
    from urllib.parse import urlsplit

    schemes = ("https",) if https_only else ("https", "http")
    try:
        parts = urlsplit(url)
        usable = parts.scheme in schemes and bool(parts.hostname)
    except ValueError:  # malformed, such as an unclosed IPv6 bracket
        usable = False
    if not usable:
        raise typer.BadParameter(
            f"{url!r} is not an https:// address, and Telegram delivers updates over https only"
            if https_only
            else f"{url!r} is not an http:// or https:// address",
            param_hint="URL",
        )
    if not force and not parts.path.rstrip("/").endswith(WEBHOOK_PATH):
        raise typer.BadParameter(
            f"the web app receives updates at {WEBHOOK_PATH} and {url!r} does not end with it "
            "(pass --force if a proxy in front of the web app rewrites the path)",
            param_hint="URL",
        )


def _official_api(settings: Settings) -> bool:
    """Whether the bot talks to Telegram's own servers, not a local Bot API server."""
    from urllib.parse import urlsplit

    return urlsplit(settings.telegram_api_url).hostname == "api.telegram.org"


def _settings(*needs: str) -> Settings:
    from pomogator.servers import settings_for

    return settings_for("bot_token", *needs)


@app.command("set-webhook")
def set_webhook(
    url: Annotated[
        str,
        typer.Argument(
            metavar="URL",
            help=f"The web app's public HTTPS address, ending in {WEBHOOK_PATH} (http:// only for a local Bot API "
            "server).",
        ),
    ],
    drop_pending_updates: Annotated[
        bool, typer.Option("--drop-pending-updates", help="Forget the updates Telegram has not delivered yet.")
    ] = False,
    max_connections: Annotated[
        int, typer.Option(metavar="N", min=1, max=100, help="At most this many requests Telegram sends at once.")
    ] = 40,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help=f"Register URL even though its path does not end in {WEBHOOK_PATH} (a proxy that rewrites paths).",
        ),
    ] = False,
) -> None:
    """Make Telegram deliver updates to URL, with POMOGATOR_TELEGRAM_WEBHOOK_SECRET as its secret (webhook mode).

    Then run only `pomogator run web` (one or more instances behind URL): `pomogator run bot` refuses to poll while
    a webhook is set.
    """
    url = url.strip()
    settings = _settings("telegram_webhook_secret")
    settings.require_strong_webhook_secret()
    check_webhook_url(url, force=force, https_only=_official_api(settings))
    assert settings.telegram_webhook_secret is not None
    params = {
        "url": url,
        "secret_token": settings.telegram_webhook_secret.get_secret_value(),
        "allowed_updates": used_update_types(),
        "max_connections": max_connections,
        "drop_pending_updates": drop_pending_updates,
    }
    asyncio.run(call_bot_api(settings, "setWebhook", params))
    cli_output.notice(f"Webhook set: {url}")


@app.command("delete-webhook")
def delete_webhook(
    drop_pending_updates: Annotated[
        bool, typer.Option("--drop-pending-updates", help="Forget the updates Telegram has not delivered yet.")
    ] = False,
) -> None:
    """Stop Telegram's deliveries to the webhook (to go back to polling with `pomogator run bot`)."""
    settings = _settings()
    asyncio.run(call_bot_api(settings, "deleteWebhook", {"drop_pending_updates": drop_pending_updates}))
    cli_output.notice("Webhook removed." + (" Pending updates dropped." if drop_pending_updates else ""))


@app.command("webhook-info")
def webhook_info(
    as_json: Annotated[bool, typer.Option("--json", help="Print Telegram's answer as one JSON object.")] = False,
) -> None:
    """Show where Telegram delivers updates, how many wait, and the last delivery error."""
    settings = _settings()
    info: dict[str, Any] = asyncio.run(call_bot_api(settings, "getWebhookInfo"))
    if as_json:
        sys.stdout.write(json.dumps(info, ensure_ascii=False) + "\n")
        return
    error_date = info.get("last_error_date")
    rows = [
        ("url", info.get("url") or "— (none: the bot polls)"),
        ("pending updates", info.get("pending_update_count", 0)),
        ("max connections", info.get("max_connections", "")),
        ("allowed updates", ", ".join(info.get("allowed_updates") or []) or "all but opt-in types"),
        ("last error", info.get("last_error_message", "")),
        (
            "last error at",
            datetime.fromtimestamp(error_date, UTC).astimezone(settings.tz).strftime("%Y-%m-%d %H:%M:%S")
            if error_date
            else "",
        ),
    ]
    cli_output.print_table("Telegram webhook", ["field", "value"], rows)
