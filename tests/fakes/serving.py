"""How the fake servers built on aiohttp start and stop, in the running event loop."""

from __future__ import annotations

import asyncio
import ssl
from types import TracebackType
from typing import Any, ClassVar, Self

from aiohttp import web


class AppServer:
    """Serves ``build_app()`` on ``host:port`` (port 0: a free one, read back once listening), over TLS with
    ``ssl_context``; an async context manager. ``_closing`` is set as the server closes, for handlers that wait."""

    host: str
    port: int
    ssl_context: ssl.SSLContext | None = None
    runner_options: ClassVar[dict[str, Any]] = {}
    _runner: web.AppRunner | None = None
    _closing: asyncio.Event | None = None

    def build_app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> Self:
        self._closing = asyncio.Event()
        self._runner = web.AppRunner(
            self.build_app(), handle_signals=False, access_log=None, shutdown_timeout=1.0, **self.runner_options
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"
