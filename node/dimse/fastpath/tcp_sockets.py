"""The sockets of every association: TCP_NODELAY, and reads into one buffer (pynetdicom 3.0.4;
part of the fast path, node/dimse/fastpath/installer.py).

pynetdicom leaves Nagle's algorithm on; with delayed ACKs that costs tens of milliseconds per
small PDU exchange (measured here: ~20 instead of ~100 small instances/s to storescp). pynetdicom
offers no socket-option hook, so both places that create sockets are wrapped. (With the fast path
off the node's own server class sets it on the sockets it accepts, node/dimse/pdu_guard.py.)

Receiving a PDU read the socket 4 KiB at a time, appending to a bytearray: it reads into one
buffer of the PDU's size instead. Neither knows the node: both could be offered to pynetdicom as
they are.
"""

from __future__ import annotations

import socket
from typing import Any

from pynetdicom import transport

from node.dimse.fastpath.patches import Patches

_original_create = transport.AssociationSocket._create_socket
_original_get_request = transport.AssociationServer.get_request


def _create_socket(self: Any, address: Any) -> socket.socket:
    sock = _original_create(self, address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _get_request(self: Any) -> tuple[socket.socket, tuple[str, int]]:
    sock, address = _original_get_request(self)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, address


def _recv(self: Any, nr_bytes: int) -> bytearray:
    """AssociationSocket.recv reading into one buffer, as much as the socket has, instead of
    4 KiB at a time into a growing bytearray (64 reads and copies per 256 KiB PDU)."""
    buffer = bytearray(nr_bytes)
    view = memoryview(buffer)
    received = 0
    while received < nr_bytes:
        count = self.socket.recv_into(view[received:], nr_bytes - received)
        if not count:  # the peer closed the connection: what arrived, as pynetdicom returns it
            del view
            del buffer[received:]
            return buffer
        received += count
    return buffer


def patch(patches: Patches) -> None:
    """No Nagle on sockets made or accepted; PDUs read into one buffer."""
    patches.replace(transport.AssociationSocket, "_create_socket", _create_socket)
    patches.replace(transport.AssociationServer, "get_request", _get_request)
    patches.replace(transport.AssociationSocket, "recv", _recv)
