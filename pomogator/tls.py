"""How the process's outgoing HTTPS connections (the Bot API, OpenRouter, YooKassa) verify servers: one choice for
all clients.

Certificate authorities come from, in order: ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set (an operator's own
bundle, e.g. behind a TLS-inspecting proxy); the system's store (``/etc/ssl/certs`` on Debian and in the image);
certifi's bundle when the system has none. For the system's store the aiohttp clients take aiohttp's default verified
context, which aiohttp makes from it when it is imported: every other TLS context costs the process ~0.7 MiB
(OpenSSL's own state, and a bundle file is parsed whole into each context made from it). The httpx clients (the plain
Bot API client, ``pomogator.notify``) take the same context from ``ssl_context``: httpx's own default would be
certifi's bundle, whatever the system trusts. The YooKassa SDK's ``requests`` takes a path (``verify_location``) for
the same reason.
"""

from __future__ import annotations

import functools
import os
import re
import ssl
import sys
from collections.abc import Mapping

_HASHED_NAME = re.compile(r"[0-9a-f]{8}\.\d+")

ClientSSL = ssl.SSLContext | bool
"""aiohttp's ``ssl`` argument: ``True`` is its default verified context."""


def trust_locations(environ: Mapping[str, str] = os.environ) -> tuple[str | None, str | None]:
    """``(cafile, capath)`` of the authorities to trust; ``(None, None)`` for the system's store."""
    cafile = environ.get("SSL_CERT_FILE") or None
    capath = environ.get("SSL_CERT_DIR") or None
    if cafile or capath:
        return cafile, capath
    system = ssl.get_default_verify_paths().capath
    if system and _is_hashed_directory(system):
        return None, None
    import certifi

    return certifi.where(), None


def _is_hashed_directory(path: str) -> bool:
    try:
        return any(_HASHED_NAME.fullmatch(name) for name in os.listdir(path))
    except OSError:
        return False


def verify_location() -> str:
    """The bundle or hashed directory of the authorities ``trust_locations`` chooses, for clients that take a path
    (``requests``, whose own default is certifi's bundle)."""
    cafile, capath = trust_locations()
    # (None, None) only for a hashed system directory, so there is one; never "" (requests would verify nothing).
    return cafile or capath or ssl.get_default_verify_paths().capath


@functools.cache
def client_ssl() -> ClientSSL:
    """What the process's aiohttp clients verify servers with: certificates and host names checked, TLS 1.2 or
    newer. ``True`` (aiohttp's default context) for the system's store, otherwise one context for both clients."""
    cafile, capath = trust_locations()
    if cafile is None and capath is None:
        return True
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile, capath=capath)


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """``client_ssl()`` as a context, for clients that would read ``True`` as certifi's bundle (httpx). For the
    system's store: aiohttp's default verified context when aiohttp is loaded (the bot, a webhook web app), so the
    process still has one; otherwise (the web app, the CLI) one of its own from the same store. httpx offers only
    HTTP/1.1 through ALPN on it, as aiohttp does."""
    chosen = client_ssl()
    if isinstance(chosen, ssl.SSLContext):
        return chosen
    loaded = getattr(sys.modules.get("aiohttp.connector"), "_SSL_CONTEXT_VERIFIED", None)
    return loaded if isinstance(loaded, ssl.SSLContext) else ssl.create_default_context()
