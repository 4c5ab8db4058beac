"""``pomogator run web``: the Starlette app under uvicorn."""

from __future__ import annotations

from pomogator.config import Settings

# How long an idle connection stays open for its next request (uvicorn's default is 5 s). The reverse proxy in front
# keeps its idle upstream connections longer (Caddy 2 min, nginx's upstream keep-alive 60 s); when the app closed
# first, a request the proxy sent at that moment met a closed connection: a 502 to Telegram or YooKassa, which
# deliver again only later. Outliving the proxy's idle timeout leaves closing to the proxy.
KEEP_ALIVE_SECONDS = 130


def web_needs(settings: Settings) -> tuple[str, ...]:
    """The settings ``run web`` cannot start without. YooKassa is not among them: without a shop payments are off
    and the other jobs run. The bot token is, when the app takes payments (payers are told theirs went through) or
    serves the bot (webhook mode, which also needs the OpenRouter key); otherwise it only sends the premium
    reminders, which are off without it."""
    needs: list[str] = []
    if settings.billing_configured or settings.webhook_mode:
        needs.append("bot_token")
    if settings.webhook_mode:
        needs.append("openrouter_api_key")
    return tuple(needs)


def serve(settings: Settings) -> None:
    """Run the web app until SIGINT/SIGTERM. Raises ConfigError when a setting of ``web_needs`` is missing.

    uvicorn is given no logging configuration (records reach loguru through the stdlib interception) and no proxy
    handling: its default would believe ``X-Forwarded-For`` from 127.0.0.1, letting any local process pick the
    address YooKassa's notifications are checked against. Forwarded addresses are read by the app itself, only from
    ``POMOGATOR_WEB_TRUSTED_PROXIES`` (see :mod:`pomogator.web.network`).
    """
    settings.require(*web_needs(settings))
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from pomogator.web.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.web_host,
        port=settings.web_port,
        log_config=None,
        proxy_headers=False,
        forwarded_allow_ips="",
        server_header=False,
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        lifespan="on",
        # The app serves no WebSockets: no protocol for them is loaded (uvicorn looks for two libraries by default).
        ws="none",
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )
    try:
        uvicorn.Server(config).run()
    except SystemExit as exited:
        failures = app.state.startup_failures
        if exited.code == STARTUP_FAILURE and failures:
            # uvicorn exits with 3 when start-up fails; a failure of ours is reported like any command's.
            raise failures[-1] from None
        raise
