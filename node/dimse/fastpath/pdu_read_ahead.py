"""PDUs read from an association's socket through one read-ahead buffer.

pynetdicom reads each PDU with two receives, its 6-byte header and then its body, each after a
`select` that asks whether the socket has data: a small C-STORE (a command PDU and a data set
PDU) cost the DUL thread four receives and three selects beyond the one it waits in. Here one
receive takes whatever has arrived, up to READ_AHEAD bytes, and the PDUs in it are served from
memory; a body larger than the buffer is read straight into a buffer of its own, as before.
"""

from __future__ import annotations

import socket

READ_AHEAD = 64 * 1024


class PduReader:
    """One association's receive buffer; used by its DUL thread only."""

    __slots__ = ("_buffer", "_end", "_start", "_view")

    def __init__(self, capacity: int = READ_AHEAD) -> None:
        self._buffer = bytearray(capacity)
        self._view = memoryview(self._buffer)
        self._start = 0
        self._end = 0

    @property
    def pending(self) -> bool:
        """Bytes received and not read yet: the DUL must not wait for the socket meanwhile."""
        return self._end > self._start

    def read(self, sock: socket.socket, count: int) -> bytearray | None:
        """The next `count` bytes (a PDU's header, then its body), received first when they
        are not here yet; None when the peer closed before they all came."""
        available = self._end - self._start
        if available < count:
            if count > len(self._buffer):
                return self._take_large(sock, count)
            if self._start + count > len(self._buffer):  # move the rest to the front
                self._buffer[:available] = self._view[self._start:self._end]
                self._start, self._end = 0, available
            while self._end - self._start < count:
                received = sock.recv_into(self._view[self._end:])
                if not received:
                    return None
                self._end += received
        out = self._buffer[self._start:self._start + count]
        self._start += count
        if self._start == self._end:
            self._start = self._end = 0
        return out

    def _take_large(self, sock: socket.socket, count: int) -> bytearray | None:
        out = bytearray(count)
        view = memoryview(out)
        got = self._end - self._start
        view[:got] = self._view[self._start:self._end]
        self._start = self._end = 0
        while got < count:
            received = sock.recv_into(view[got:])
            if not received:
                return None
            got += received
        return out
