"""Who is really asking: the client address behind explicitly trusted proxies, and whether it is trusted.

uvicorn runs with ``proxy_headers=False`` (its default would believe ``X-Forwarded-For`` from 127.0.0.1, so a local
forger could pick any address); the forwarded chain is read here, and only when the direct peer is one of
``POMOGATOR_WEB_TRUSTED_PROXIES``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from pomogator.config import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(value: str) -> IPAddress | None:
    """An address from a peer or a forwarded header, IPv4-mapped IPv6 normalised to IPv4; None if malformed.

    Accepts ``1.2.3.4``, ``1.2.3.4:5678``, ``::1``, ``[::1]:5678``.
    """
    text = value.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[IPNetwork]
) -> IPAddress | None:
    """The address of whoever sent the request.

    The direct peer, unless it is a trusted proxy: then the ``X-Forwarded-For`` chain is walked from the right
    (each proxy appends the address it saw), skipping trusted proxies; the first other address is the client.
    A malformed entry ends the walk with no address, so it is never trusted.
    """
    address = parse_address(peer) if peer else None
    if address is None or not in_networks(address, trusted_proxies):
        return address
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            return None
        if not in_networks(address, trusted_proxies):
            return address
    # Every hop is a trusted proxy: the request came from the proxies themselves.
    return address
