"""Which address a request comes from, behind trusted proxies or not."""

from __future__ import annotations

import ipaddress

import pytest

from pomogator.config import DEFAULT_YOOKASSA_NETWORKS, parse_networks
from pomogator.web.network import client_address, in_networks, parse_address

PROXIES = parse_networks("10.0.0.1, 10.1.0.0/16")
YOOKASSA = parse_networks(DEFAULT_YOOKASSA_NETWORKS)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("185.71.76.1", "185.71.76.1"),
        ("185.71.76.1:443", "185.71.76.1"),
        ("::ffff:185.71.76.1", "185.71.76.1"),
        ("[::ffff:185.71.76.1]:443", "185.71.76.1"),
        ("2a02:5180::1", "2a02:5180::1"),
        ("[2a02:5180::1]:8080", "2a02:5180::1"),
        ("example.com", None),
        ("", None),
        ("1.2.3.4.5", None),
    ],
)
def test_parse_address(raw: str, expected: str | None) -> None:
    parsed = parse_address(raw)
    assert (str(parsed) if parsed else None) == expected


def test_ipv4_mapped_peer_is_matched_against_ipv4_networks() -> None:
    address = client_address("::ffff:77.75.156.11", [], ())
    assert address == ipaddress.ip_address("77.75.156.11")
    assert address is not None and in_networks(address, YOOKASSA)


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() -> None:
    assert str(client_address("127.0.0.1", ["185.71.76.1"], PROXIES)) == "127.0.0.1"
    assert str(client_address("127.0.0.1", ["185.71.76.1"], ())) == "127.0.0.1"


@pytest.mark.parametrize(
    ("chain", "expected"),
    [
        (["185.71.76.1"], "185.71.76.1"),
        # A client may send its own X-Forwarded-For; the proxy appends what it saw, so the rightmost counts.
        (["185.71.76.1, 1.2.3.4"], "1.2.3.4"),
        (["1.2.3.4, 185.71.76.1"], "185.71.76.1"),
        (["185.71.76.1, 10.1.2.3"], "185.71.76.1"),
        (["185.71.76.1", "10.1.2.3"], "185.71.76.1"),
        (["garbage, 185.71.76.1"], "185.71.76.1"),
        (["185.71.76.1, garbage"], None),
        ([], "10.0.0.1"),
        (["10.1.0.5"], "10.1.0.5"),
    ],
)
def test_forwarded_chain_behind_trusted_proxies(chain: list[str], expected: str | None) -> None:
    address = client_address("10.0.0.1", chain, PROXIES)
    assert (str(address) if address else None) == expected


def test_ipv6_addresses_are_not_matched_against_ipv4_networks() -> None:
    assert not in_networks(ipaddress.ip_address("::1"), parse_networks("127.0.0.1"))
    assert in_networks(ipaddress.ip_address("2a02:5180::7"), YOOKASSA)
