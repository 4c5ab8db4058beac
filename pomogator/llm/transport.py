"""The openai SDK's HTTP transport: its requests go out through one aiohttp session.

The SDK speaks httpx2 and ships an aiohttp transport of its own (``openai.DefaultAioHttpClient``); this one does the
same job with the process's shared TLS context (``pomogator.tls``) and without loading httpx2's own connection
pool (httpcore2, ~1.3 MiB) and certificate bundle, which an aiohttp transport never uses. Proxies come from
``HTTP(S)_PROXY`` and ``NO_PROXY``, read by aiohttp. aiohttp's failures become httpx2's, which the SDK turns into
its own errors (retrying connection failures), the original kept as the cause.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx2


class AiohttpTransport(httpx2.AsyncBaseTransport):
    def __init__(self, ssl_context: ssl.SSLContext, *, max_connections: int, keepalive_expiry: float | None) -> None:
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl_context, limit=self._max_connections, keepalive_timeout=self._keepalive_expiry
            )
            # The body goes to httpx2 as it came: httpx2 decodes it by its Content-Encoding.
            self._session = aiohttp.ClientSession(connector=connector, trust_env=True, auto_decompress=False)
        return self._session

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeout = request.extensions.get("timeout", {})
        try:
            body: bytes | None = request.content or None
        except httpx2.RequestNotRead:  # pragma: no cover - the SDK sends JSON bodies, read already
            raise httpx2.UnsupportedProtocol("streamed request bodies are not supported") from None
        with _httpx_errors():
            response = await self._client().request(
                request.method,
                str(request.url),
                headers=request.headers,
                data=body,
                allow_redirects=False,
                compress=False,
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeout.get("connect"), sock_read=timeout.get("read"), connect=timeout.get("pool")
                ),
            )
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx2.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Body(httpx2.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        self._response.release()


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx2.ConnectTimeout(str(exc)) from exc
    except aiohttp.SocketTimeoutError as exc:
        raise httpx2.ReadTimeout(str(exc)) from exc
    except aiohttp.ServerTimeoutError as exc:
        raise httpx2.TimeoutException(str(exc)) from exc
    except (aiohttp.ClientProxyConnectionError, aiohttp.ClientHttpProxyError) as exc:
        raise httpx2.ProxyError(str(exc)) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx2.ConnectError(str(exc)) from exc
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
        raise httpx2.ReadError(str(exc)) from exc
    except aiohttp.InvalidURL as exc:
        raise httpx2.UnsupportedProtocol(str(exc)) from exc
    except TimeoutError as exc:
        raise httpx2.TimeoutException(str(exc) or "timed out") from exc
