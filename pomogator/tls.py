"""One TLS client context for the process's outgoing connections (the Bot API, OpenRouter).

Certificate authorities come from, in order: ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set (an operator's own
bundle, e.g. behind a TLS-inspecting proxy); the system's hashed certificate directory (``/etc/ssl/certs`` on
Debian and in the image), from which OpenSSL reads only the authorities a handshake needs; certifi's bundle
otherwise. A bundle file is parsed whole into every context made from it (~0.7 MiB each); the directory costs
nothing until used, and one context serves every client.
"""

from __future__ import annotations

import functools
import os
import re
import ssl
from collections.abc import Mapping

_HASHED_NAME = re.compile(r"[0-9a-f]{8}\.\d+")


def trust_locations(environ: Mapping[str, str] = os.environ) -> tuple[str | None, str | None]:
    """``(cafile, capath)`` for the client context: see the module's docstring."""
    cafile = environ.get("SSL_CERT_FILE") or None
    capath = environ.get("SSL_CERT_DIR") or None
    if cafile or capath:
        return cafile, capath
    system = ssl.get_default_verify_paths().capath
    if system and _is_hashed_directory(system):
        return None, system
    import certifi

    return certifi.where(), None


def _is_hashed_directory(path: str) -> bool:
    try:
        return any(_HASHED_NAME.fullmatch(name) for name in os.listdir(path))
    except OSError:
        return False


@functools.cache
def client_context() -> ssl.SSLContext:
    """The process's TLS client context: certificates and host names verified, TLS 1.2 or newer."""
    cafile, capath = trust_locations()
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile, capath=capath)
