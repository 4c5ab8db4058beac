"""The openai SDK's HTTP transport: its requests go out through one aiohttp session.

The SDK speaks httpx2 and ships an aiohttp transport of its own (``openai.DefaultAioHttpClient``); this one does the
same job, verifying servers as the Bot API's client does (``pomogator.tls``), without loading httpx2's own
connection pool (httpcore2, ~1.3 MiB) and certificate bundle, which an aiohttp transport never uses. Proxies come from
``HTTP(S)_PROXY`` and ``NO_PROXY``, read once per host (aiohttp's own ``trust_env`` reads them, and ``~/.netrc`` in a
worker thread, on every request). aiohttp's failures become httpx2's, which the SDK turns into its own errors
(retrying connection failures), the original kept as the cause.
"""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx2
from yarl import URL

from pomogator.tls import ClientSSL

Proxy = tuple[URL, dict[str, str]] | None
"""A proxy's address and the headers it is sent (its credentials)."""


class AiohttpTransport(httpx2.AsyncBaseTransport):
    def __init__(self, ssl: ClientSSL, *, max_connections: int, keepalive_expiry: float | None) -> None:
        self._ssl = ssl
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], Proxy] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl, limit=self._max_connections, keepalive_timeout=self._keepalive_expiry
            )
            # The body goes to httpx2 as it came: httpx2 decodes it by its Content-Encoding.
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    def _proxy(self, url: httpx2.URL) -> Proxy:
        key = (url.scheme, url.host)
        if key not in self._proxies:
            self._proxies[key] = _proxy_from_environment(url.scheme, url.host)
        return self._proxies[key]

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeout = request.extensions.get("timeout", {})
        try:
            body: bytes | None = request.content or None
        except httpx2.RequestNotRead:  # pragma: no cover - the SDK sends JSON bodies, read already
            raise httpx2.UnsupportedProtocol("streamed request bodies are not supported") from None
        proxy = self._proxy(request.url)
        with _httpx_errors():
            response = await self._client().request(
                request.method,
                str(request.url),
                headers=request.headers,
                data=body,
                allow_redirects=False,
                compress=False,
                proxy=proxy[0] if proxy else None,
                proxy_headers=proxy[1] if proxy else None,
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


def _proxy_from_environment(scheme: str, host: str) -> Proxy:
    """The proxy ``HTTP_PROXY``/``HTTPS_PROXY`` name for ``host`` unless ``NO_PROXY`` exempts it; credentials in its
    address become its ``Proxy-Authorization`` header."""
    address = urllib.request.getproxies_environment().get(scheme)
    if not address or urllib.request.proxy_bypass(host):
        return None
    url = URL(address if "://" in address else f"http://{address}")
    headers = {"Proxy-Authorization": aiohttp.encode_basic_auth(url.user, url.password or "")} if url.user else {}
    return url.with_user(None), headers


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
