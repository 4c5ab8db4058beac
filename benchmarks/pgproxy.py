"""A TCP proxy in front of PostgreSQL that counts the client's protocol round trips.

Every exchange that waits for the server ends with a message the server must answer: ``Sync`` ('S') closes an
extended-protocol exchange (Parse/Bind/Execute... — one ``fetch`` of asyncpg, prepared or not), ``Query`` ('Q') is a
simple-protocol query (``BEGIN``, ``COMMIT``, asyncpg's connection reset). Counting those two message types in the
client-to-server stream counts round trips without touching the product. New connections are counted too.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import Counter

# Untyped start-up packets: SSLRequest and GSSENCRequest come before the StartupMessage and are answered by one byte.
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


class _ClientStream:
    """Parses the client side of one connection incrementally."""

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts
        self.buffer = bytearray()
        self.started = False

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if not self.started:
                if len(self.buffer) < 8:
                    return
                length, code = struct.unpack("!ii", self.buffer[:8])
                if len(self.buffer) < length:
                    return
                del self.buffer[:length]
                if code not in (_SSL_REQUEST, _GSSENC_REQUEST):
                    self.started = True
                continue
            if len(self.buffer) < 5:
                return
            kind = chr(self.buffer[0])
            (length,) = struct.unpack("!i", self.buffer[1:5])
            if len(self.buffer) < 1 + length:
                return
            del self.buffer[: 1 + length]
            self.counts[kind] += 1


class CountingProxy:
    """``async with CountingProxy(upstream_port) as proxy:`` — connect to ``proxy.port`` instead of PostgreSQL."""

    def __init__(self, upstream_host: str = "127.0.0.1", upstream_port: int = 5432) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.counts: Counter[str] = Counter()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def round_trips(self) -> int:
        return self.counts["S"] + self.counts["Q"]

    def snapshot(self) -> dict[str, int]:
        return {
            "round_trips": self.round_trips,
            "sync": self.counts["S"],
            "query": self.counts["Q"],
            "connections": self.counts["connections"],
        }

    async def __aenter__(self) -> CountingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
        await self._server.wait_closed()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.counts["connections"] += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            return
        parser = _ClientStream(self.counts)
        up = asyncio.create_task(self._pipe(client_reader, server_writer, parser))
        down = asyncio.create_task(self._pipe(server_reader, client_writer, None))
        self._tasks.update((up, down))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
                self._tasks.discard(task)
            for writer in (client_writer, server_writer):
                writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parser: _ClientStream | None) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if parser is not None:
                    parser.feed(data)
                writer.write(data)
                await writer.drain()
