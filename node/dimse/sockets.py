"""TCP_NODELAY on every DICOM socket the node opens or accepts.

pynetdicom leaves Nagle's algorithm on; with delayed ACKs that costs tens of milliseconds per
small PDU exchange (measured here: ~20 instead of ~100 small instances/s to storescp). pynetdicom
offers no socket-option hook, so both places that create sockets are wrapped once, at start-up.
"""

from __future__ import annotations

import socket
from typing import Any

from pynetdicom import transport

_installed = False


def install_tcp_nodelay() -> None:
    global _installed
    if _installed:
        return
    original_create = transport.AssociationSocket._create_socket
    original_get_request = transport.AssociationServer.get_request

    def create_socket(self: Any, address: Any) -> socket.socket:
        sock = original_create(self, address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def get_request(self: Any) -> tuple[socket.socket, tuple[str, int]]:
        sock, address = original_get_request(self)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address

    transport.AssociationSocket._create_socket = create_socket  # type: ignore[method-assign]
    transport.AssociationServer.get_request = get_request  # type: ignore[method-assign]
    _installed = True
