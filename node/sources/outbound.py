"""Where a request's WADO URL may lead the node: not back to this machine (loopback, this node's
own ports) nor to link-local addresses (a cloud's metadata service at 169.254.169.254), unless
`[sources] allowed_hosts` lists the host.

A POST request names the server the node fetches from. Without this check any holder of the
API key could make the node send requests to itself, to services that listen on loopback only
or to the metadata service that hands out the machine's cloud credentials, and read the answers
back through the viewer. Private ranges stay allowed: the hospital's PACS lives there.

The URL is checked twice: when the request arrives (its host, and every address its name
resolves to; a refusal is a 400 naming the field), and when each connection is made
(`AddressGuard`, the session's socket factory, sees the address actually connected to), so that
a name that resolves elsewhere by then (DNS rebinding) is refused too.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohappyeyeballs import AddrInfoType

from node.config import Config, HostEntry
from node.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# "This network": connecting to 0.0.0.0 reaches this machine.
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
DEFAULT_PORTS = {"http": 80, "https": 443}


class ForbiddenAddress(OSError):
    """A connection the policy refuses, raised from inside aiohttp's connect."""


@dataclass(frozen=True)
class OutboundPolicy:
    allowed: tuple[HostEntry, ...] = ()
    # The node's own listening ports (HTTP, DICOM): on this machine they are the node itself.
    own_ports: frozenset[int] = frozenset()

    @classmethod
    def from_config(cls, config: Config) -> OutboundPolicy:
        return cls(tuple(HostEntry.parse(entry) for entry in config.sources.allowed_hosts),
                   frozenset({config.http.port, config.dicom.port} - {0}))

    def refusal(self, host: str, port: int, address: str) -> str | None:
        """Why connecting to `address` (that `host`, as the URL names it, resolved to) on `port`
        is refused, as words that follow the address; None when it is allowed."""
        ip = _address(address)
        name = host.lower().rstrip(".")
        if port in self.own_ports and _is_this_machine(ip):
            # Only an entry naming the port itself opens the node's own ports.
            if any(e.port == port and _matches(e, name, ip) for e in self.allowed):
                return None
            return "this node's own address and port"
        if ip.is_loopback or ip.is_unspecified or ip in _THIS_NETWORK:
            kind = "a loopback address"
        elif ip.is_link_local:
            kind = "a link-local address"
        else:
            return None
        if any(e.port in (None, port) and _matches(e, name, ip) for e in self.allowed):
            return None
        return kind

    def check_url(self, url: str, where: str) -> None:
        """InvalidInput naming `where` when the URL's host is refused. Every address its name
        resolves to is checked; a name that does not resolve now is left to the check at
        connect time (the import then reports it per instance)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 80)
        try:
            addresses, literal = [str(_address(host))], True
        except ValueError:
            addresses, literal = _resolve(host, port), False
        for address in addresses:
            reason = self.refusal(host, port, address)
            if reason is not None:
                named = _host_port(host, port)
                what = f"{named} is" if literal else f"{named} resolves to {address},"
                raise InvalidInput(
                    f"{where}: refused: {what} {reason} (list the host in [sources] "
                    "allowed_hosts if the node is meant to fetch from it)", field=where)

    def guard(self, url: str) -> AddressGuard:
        parts = urlsplit(url)
        return AddressGuard(self, parts.hostname or "")


class AddressGuard:
    """A session's socket factory: each connection's address is checked before connecting.
    `refused` says why the last refused connection was (for the failure's message)."""

    def __init__(self, policy: OutboundPolicy, host: str) -> None:
        self.policy = policy
        self.host = host
        self.refused = ""

    def __call__(self, addr_info: AddrInfoType) -> socket.socket:
        family, kind, proto, _, sockaddr = addr_info
        address, port = str(sockaddr[0]), int(sockaddr[1])
        reason = self.policy.refusal(self.host, port, address)
        if reason is not None:
            self.refused = f"{_host_port(self.host, port)} connected to {address}, {reason}"
            raise ForbiddenAddress(self.refused)
        return socket.socket(family, kind, proto)


def _address(text: str) -> IPAddress:
    """An address as written (a zone index dropped), an IPv4-mapped IPv6 one as IPv4."""
    ip = ipaddress.ip_address(text.partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _matches(entry: HostEntry, name: str, ip: IPAddress) -> bool:
    if entry.network is not None:
        return ip in entry.network
    return entry.name == name


def _is_this_machine(ip: IPAddress) -> bool:
    """Whether `ip` is one of this machine's addresses: only those can be bound."""
    if ip.is_loopback or ip.is_unspecified or ip in _THIS_NETWORK:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(ip), 0))
    except OSError:
        return False
    return True


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
