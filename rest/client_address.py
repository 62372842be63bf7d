"""The client's address for the audit, through the reverse proxies the configuration trusts.

Behind nginx every request comes from the proxy, which names the real client in
X-Forwarded-For. Anyone can send that header, so it is believed only from a peer listed in
`[http] trusted_proxies`, and only as far back as the hops are trusted proxies themselves: the
right-most address that is not one is the client (the left part of the header is whatever the
client chose to write).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

from rest.state import TRUSTED_PROXIES

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_LENGTH = 64


def trusted_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """`[http] trusted_proxies` as networks (checked when the configuration was read)."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(request: web.Request) -> str:
    peer = request.remote or ""
    networks = request.app[TRUSTED_PROXIES]
    if not networks or not _trusted(peer, networks):
        return peer[:MAX_LENGTH]
    hops = [hop.strip() for header in request.headers.getall("X-Forwarded-For", [])
            for hop in header.split(",")]
    client = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # not an address: nothing left of it can be believed
        client = hop
        if not _trusted(hop, networks):
            break
    return client[:MAX_LENGTH]
