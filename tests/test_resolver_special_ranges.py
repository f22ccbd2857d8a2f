"""The link resolver refuses special-purpose IPv6 ranges that Python's `is_global` calls global
(issue 10, low): 6to4 can wrap a private IPv4 address, site-local is routed inside a site."""

from __future__ import annotations

import pytest

from factbridge.linkrisk.resolve import address_allowed


@pytest.mark.parametrize("address", [
    "2002:c0a8:0101::1",  # 6to4 of 192.168.1.1
    "2002:0808:0808::1",  # 6to4 of a public address: still refused (a relay decides where it goes)
    "fec0::1",  # site-local
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b:1::1",  # local-use NAT64
    "2001::1",  # Teredo
    "3fff::1",  # documentation (RFC 9637)
    "5f00::1",  # SRv6 segment ids
    "::ffff:10.0.0.1", "fc00::1", "fe80::1", "::1", "2001:db8::1",
])
def test_special_ipv6_ranges_are_refused(address: str) -> None:
    assert not address_allowed(address)


@pytest.mark.parametrize("address", ["2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "93.184.215.14"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_allowed(address)
