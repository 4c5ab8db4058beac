"""Which link addresses Telegram takes."""

from __future__ import annotations

import ipaddress
import re

WEB_SCHEMES = ("http://", "https://")
_AUTHORITY = re.compile(r"[a-z]+://([^/?#]*)", re.IGNORECASE)
_HOST = re.compile(r"(?:[a-z0-9._~!$&'()*+,;=-]|%[0-9a-f]{2}|[^\x00-\x7f])+")
_PORT = re.compile(r"[0-9]+")
_TG_HOST = re.compile(r"tg://[a-z0-9_-]+(?:[/?#].*)?", re.IGNORECASE | re.DOTALL)


def link_allowed(href: str) -> bool:
    """Whether Telegram takes ``href`` as a link's address, checked as TDLib does (``parse_url`` and
    ``LinkManager::check_link``): a link it refuses costs the whole message its formatting. A web address needs
    a host, with a dot or an IPv6 literal, of the characters a host may have (IDN ones too), and a port from 1 to
    65535 when it has one."""
    lowered = href.lower()
    if lowered.startswith(WEB_SCHEMES):
        return _web_address_allowed(href)
    if lowered.startswith("tg:"):
        return _TG_HOST.fullmatch(href) is not None
    return lowered.startswith("mailto:") and len(href) > len("mailto:")


def _web_address_allowed(href: str) -> bool:
    authority = _AUTHORITY.match(href)
    if authority is None:
        return False
    host = authority.group(1)
    colon = host.rfind(":")
    if colon > max(host.rfind("]"), host.rfind("@")):
        port = host[colon + 1 :].lstrip("0")  # an empty port, or 0, is none
        if _PORT.fullmatch(port) is None or len(port) > 5 or int(port) > 65535:
            return False
        host = host[:colon]
    host = host[host.rfind("@") + 1 :].lower()
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return "%" not in host
    return "." in host and host.strip(".") != "" and _HOST.fullmatch(host) is not None
