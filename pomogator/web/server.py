"""``pomogator run web``: the Starlette app under uvicorn."""

from __future__ import annotations

import socket

from loguru import logger

from pomogator.config import Settings
from pomogator.errors import ConfigError

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


def listen(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to ``host:port`` (every address the host name stands for, as asyncio's ``create_server`` binds
    them), for uvicorn to serve on. Bound before the app starts: a port in use or an address this machine does not
    have is a ConfigError (``cannot listen on HOST:PORT: address already in use``) before any of the app's start-up
    has run, instead of uvicorn's error log after it and its exit code 3."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sockets: list[socket.socket] = []
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, protocol, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, protocol)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # As asyncio does: an IPv6 socket takes IPv6 only, its IPv4 twin (if any) is bound on its own.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot listen on {where}: {reason[:1].lower()}{reason[1:]}") from None
    return sockets


def serve(settings: Settings) -> None:
    """Run the web app until SIGINT/SIGTERM. Raises ConfigError when a setting of ``web_needs`` is missing or the
    address cannot be listened on (see ``listen``).

    uvicorn is given no logging configuration (records reach loguru through the stdlib interception) and no proxy
    handling: its default would believe ``X-Forwarded-For`` from 127.0.0.1, letting any local process pick the
    address YooKassa's notifications are checked against. Forwarded addresses are read by the app itself, only from
    ``POMOGATOR_WEB_TRUSTED_PROXIES`` (see :mod:`pomogator.web.network`).
    """
    settings.require(*web_needs(settings))
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from pomogator.web.app import create_app

    class ServerOnSockets(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            # uvicorn says where it listens only on sockets of its own.
            if self.started and sockets:
                host, port = sockets[0].getsockname()[:2]
                logger.info("Listening on http://{}", f"[{host}]:{port}" if ":" in host else f"{host}:{port}")

    sockets = listen(settings.web_host, settings.web_port)
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
        ServerOnSockets(config).run(sockets=sockets)
    except SystemExit as exited:
        failures = app.state.startup_failures
        if exited.code == STARTUP_FAILURE and failures:
            # uvicorn exits with 3 when start-up fails; a failure of ours is reported like any command's.
            raise failures[-1] from None
        raise
    finally:
        for sock in sockets:
            sock.close()
