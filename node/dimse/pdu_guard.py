"""The PDU limits of the README kept in front of plain pynetdicom (the fast path off).

pynetdicom reads a PDU of whatever length its header announces, 4 KiB at a time, decodes an
A-ASSOCIATE-RQ without checking its structure (logging tracebacks and the peer's bytes), and does
not refuse a command fragment inside a data set. The fast path checks all that
in its own DUL loop (node/dimse/fastpath/event_driven_loops.py); without it, the node's server
class accepts each connection as a `GuardedSocket`, which reads every PDU whole before pynetdicom
gets any byte of it and checks it first:

- a P-DATA-TF PDU longer than the Maximum Length the node announced, or any other PDU longer than
  LONGEST_CONTROL_PDU, is refused from its header, before anything is allocated for it;
- an A-ASSOCIATE-RQ is checked against PS3.8 9.3.2 (node/dimse/associate_rq.py);
- a command fragment, or a fragment of another presentation context, inside a data set (PS3.8
  Annex E) is refused;
- a connection is handed to pynetdicom only once its first PDU, looked at without taking it from
  the socket, is a well-formed A-ASSOCIATE-RQ: pynetdicom would keep a connection closed before
  its request, or refused for it, as an open association until `dicom.acse_timeout` (forty
  malformed requests held every slot of the node), where here it ends at once.

A refused PDU costs the peer an A-ABORT and its connection, with one log line; pynetdicom sees
the connection close between two PDUs, and the node goes on serving. This is a socket the node
makes and hands to pynetdicom's documented server class hook (`AE.make_server(server_class=)`),
not a change to pynetdicom.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import struct
from typing import Any

from pynetdicom.transport import ThreadedAssociationServer

from node.dimse.associate_rq import Malformed, check_associate_rq
from node.dimse.peer_text import printable

log = logging.getLogger(__name__)

# The longest PDU other than P-DATA-TF read: an A-ASSOCIATE-RQ with every presentation context
# the node supports and user identity is a few tens of KiB. A P-DATA-TF may be as long as the
# Maximum Length this side announced. A longer one is refused before its body is allocated.
LONGEST_CONTROL_PDU = 4 * 1024 * 1024
_PDU_HEADER = struct.Struct(">BBL")
_PDV_HEADER = struct.Struct(">LBB")
# An A-ASSOCIATE-RQ up to this size is checked before pynetdicom gets the connection (it must fit
# in the socket's receive buffer to be looked at); a longer one when pynetdicom reads it.
LONGEST_CHECKED_FIRST = 64 * 1024
# A-ABORT (PS3.8 9.3.8), source: service provider, reason: not specified.
A_ABORT = bytes((0x07, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x02, 0x00))
# A-ASSOCIATE-RJ (PS3.8 9.3.4): rejected permanent, by the service provider (ACSE), protocol
# version not supported: what pynetdicom answers, before waiting out acse_timeout.
REJECT_VERSION = bytes((0x03, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x01, 0x02, 0x02))


class Refused(Exception):
    """What is wrong with a PDU, in a sentence fit for a log line."""


class GuardedSocket(socket.socket):
    """An accepted association's socket whose reads hand pynetdicom only PDUs checked whole."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.longest_data = 0xFFFFFFFF
        self.peer = "?"
        self._pending = memoryview(b"")
        self._refused = False
        self._in_data_set: int | None = None  # the context ID of a data set under way

    @classmethod
    def taking(cls, accepted: socket.socket, longest_data: int, peer: str) -> GuardedSocket:
        """`accepted` made a GuardedSocket (the same connection); `longest_data` is the Maximum
        Length the node announces (0: none)."""
        guarded = cls(accepted.family, accepted.type, accepted.proto, fileno=accepted.detach())
        guarded.longest_data = longest_data or 0xFFFFFFFF
        guarded.peer = peer
        return guarded

    def admit(self, timeout: float | None) -> bool:
        """Whether the connection's first PDU (waited for up to `timeout` seconds) is a
        well-formed A-ASSOCIATE-RQ, looked at without taking it from the socket. Anything else
        is answered with an A-ABORT here (nothing, if the peer closed first); the caller then
        closes the connection."""
        self.settimeout(timeout)
        try:
            header = super().recv(6, socket.MSG_PEEK | socket.MSG_WAITALL)
            if len(header) < 6:
                return False  # closed before a request: a port probe, a health check
            pdu_type, _, length = _PDU_HEADER.unpack(header)
            if pdu_type != 0x01:
                raise Refused(f"a PDU of type 0x{pdu_type:02X} before any association request")
            if length > LONGEST_CONTROL_PDU:
                raise Refused(f"a PDU of {length} bytes, longer than the "
                              f"{LONGEST_CONTROL_PDU} accepted")
            if length <= LONGEST_CHECKED_FIRST:
                pdu = super().recv(6 + length, socket.MSG_PEEK | socket.MSG_WAITALL)
                if len(pdu) < 6 + length:
                    return False  # closed inside its request
                check_associate_rq(pdu[6:])
                if pdu[6:8] != b"\x00\x01":
                    self._refuse("an association request for a protocol version other than 1",
                                 REJECT_VERSION)
                    return False
            return True
        except (Refused, Malformed) as exc:
            self._refuse(f"malformed A-ASSOCIATE-RQ: {exc}" if isinstance(exc, Malformed)
                         else str(exc))
            return False
        except OSError:  # silent until the timeout, or reset
            return False
        finally:
            with contextlib.suppress(OSError):
                self.settimeout(None)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if not self._pending:
            if self._refused:
                return b""
            self._pending = memoryview(self._next_pdu())
        chunk = bytes(self._pending[:bufsize])
        self._pending = self._pending[bufsize:]
        return chunk

    def _next_pdu(self) -> bytes:
        header = self._read(6)
        if len(header) < 6:
            return header  # closed between two PDUs: pynetdicom says so itself
        pdu_type, _, length = _PDU_HEADER.unpack(header)
        if not 0x01 <= pdu_type <= 0x07:
            return header  # pynetdicom refuses an unknown type from its header
        try:
            longest = self.longest_data if pdu_type == 0x04 else LONGEST_CONTROL_PDU
            if length > longest:
                raise Refused(f"a PDU of {length} bytes, longer than the {longest} accepted")
            body = self._read(length)
            if len(body) < length:
                return header + body  # closed inside the PDU: pynetdicom says so itself
            if pdu_type == 0x01:
                check_associate_rq(body)
            elif pdu_type == 0x04:
                self._check_fragments(body)
        except (Refused, Malformed) as exc:
            self._refuse(str(exc))
            return b""
        return header + body

    def _read(self, count: int) -> bytes:
        parts, received = [], 0
        while received < count:
            part = super().recv(min(count - received, 1 << 20))
            if not part:
                break
            parts.append(part)
            received += len(part)
        return b"".join(parts)

    def _check_fragments(self, body: bytes) -> None:
        offset = 0
        while offset < len(body):
            if len(body) - offset < _PDV_HEADER.size:
                raise Refused("a presentation data value shorter than its header")
            length, context_id, control = _PDV_HEADER.unpack_from(body, offset)
            if length < 2 or offset + 4 + length > len(body):
                raise Refused("a presentation data value longer than its PDU")
            if self._in_data_set is not None and (control & 1 or context_id != self._in_data_set):
                raise Refused("a command fragment inside a data set")
            if not control & 1:
                self._in_data_set = None if control & 2 else context_id
            offset += 4 + length

    def _refuse(self, why: str, answer: bytes = A_ABORT) -> None:
        log.error("refusing the association from %s: %s", self.peer, printable(why))
        self._refused = True
        with contextlib.suppress(OSError):
            self.sendall(answer)
            self.shutdown(socket.SHUT_RDWR)


class GuardedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, accepting each connection as a GuardedSocket with
    TCP_NODELAY (pynetdicom leaves Nagle's algorithm on: tens of milliseconds per small PDU
    exchange with delayed ACKs)."""

    def get_request(self) -> tuple[socket.socket, Any]:
        accepted, address = super().get_request()
        accepted.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        return GuardedSocket.taking(accepted, self.ae.maximum_pdu_size, peer), address

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve the connection, once its first PDU is a well-formed association request."""
        if isinstance(request, GuardedSocket) and not request.admit(self.ae.acse_timeout):
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)

    def shutdown(self) -> None:
        # pynetdicom's would also take the server off its AE's list of servers, where
        # make_server never put it.
        socketserver.TCPServer.shutdown(self)
        self.server_close()
