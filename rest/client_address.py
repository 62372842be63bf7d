"""What the client used to reach the node, through the reverse proxies the configuration
trusts: its address (for the audit), and the scheme and host it asked for (the origin that
state-changing browser requests must come from, and whether the session cookie is Secure).

Behind nginx every request comes from the proxy, which names the real client in
X-Forwarded-For. Anyone can send that header, so it is believed only from a peer listed in
`[http] trusted_proxies`, and only as far back as the hops are trusted proxies themselves: the
right-most address that is not one is the client (the left part of the header is whatever the
client chose to write). X-Forwarded-Proto and X-Forwarded-Host are believed from a trusted peer
only too, and only their right-most value: the one the proxy in front of the node wrote.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web
from yarl import URL

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


def from_trusted_proxy(request: web.Request) -> bool:
    """Whether the request's peer is a proxy listed in `[http] trusted_proxies`."""
    networks = request.app[TRUSTED_PROXIES]
    return bool(networks) and _trusted(request.remote or "", networks)


def _forwarded(request: web.Request, name: str) -> str | None:
    """The right-most value of a forwarding header, when a trusted proxy sent the request."""
    if not from_trusted_proxy(request):
        return None
    values = [value.strip() for header in request.headers.getall(name, [])
              for value in header.split(",")]
    return values[-1] if values and values[-1] else None


def reached_over_tls(request: web.Request) -> bool:
    """Whether the browser's connection was TLS: this socket's, or the trusted proxy's."""
    if request.secure:
        return True
    return (_forwarded(request, "X-Forwarded-Proto") or "").lower() == "https"


def request_origin(request: web.Request) -> URL | None:
    """The origin the browser addressed (scheme, host, port), None without a usable Host."""
    host = _forwarded(request, "X-Forwarded-Host") or request.headers.get("Host", "")
    if not host or any(c in host for c in "/?#@\\ "):
        return None
    try:
        origin = URL(f"{'https' if reached_over_tls(request) else 'http'}://{host}")
        return origin if origin.host else None
    except ValueError:
        return None
