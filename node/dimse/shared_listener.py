"""The DICOM port shared by the worker processes, and which of them takes a new association.

All workers accept on one listening socket, made by the supervisor before it forks them
(node/workers.py). A new connection wakes every worker's accept loop; left to chance, whichever
wins the race takes it, and four associations from one modality could all land on one process
(one core) while the other idles. So each worker publishes how many associations it is serving
in a small array shared by all of them, and a worker serving more than another live one leaves
a pending connection alone for a few milliseconds, so that the less busy one takes it. Never
for long: a worker that has hung must not hold up new associations.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import select
import socket
import time
from typing import Any

from pynetdicom.transport import ThreadedAssociationServer

# How long a busier worker leaves a pending connection to a less busy one.
YIELD_SECONDS = 0.05
# How often it looks whether the other worker has taken it.
YIELD_POLL_SECONDS = 0.002
# A slot's value while its worker is not running.
NOT_RUNNING = -1
LISTEN_BACKLOG = 128


class AssociationLoad:
    """Open associations per worker, in memory the forked workers share (one writer per slot:
    the worker it belongs to; the supervisor marks a dead worker's slot)."""

    def __init__(self, workers: int) -> None:
        self._counts = multiprocessing.RawArray(ctypes.c_int, [NOT_RUNNING] * workers)

    def publish(self, worker: int, count: int) -> None:
        self._counts[worker] = count

    def mark_stopped(self, worker: int) -> None:
        self._counts[worker] = NOT_RUNNING

    def any_serving(self) -> bool:
        return any(count >= 0 for count in self._counts)

    def busier_than_another(self, worker: int) -> bool:
        mine = self._counts[worker]
        return any(0 <= count < mine for i, count in enumerate(self._counts) if i != worker)


def shared_server_class(listener: socket.socket, load: AssociationLoad,
                        worker: int) -> type[ThreadedAssociationServer]:
    """A pynetdicom server class that serves `listener` (already bound and listening) instead of
    binding its own socket, and takes its share of the connections (see the module docstring)."""

    class SharedListenerServer(ThreadedAssociationServer):
        def server_bind(self) -> None:
            if self.socket is not None:  # the fresh one socketserver made: the shared one serves
                self.socket.close()
            listener.setblocking(False)  # a worker that loses the race must not block in accept
            self.socket = listener
            self.server_address = listener.getsockname()

        def server_activate(self) -> None:
            # The supervisor bound it; the first worker ready opens it (again: a no-op).
            listener.listen(LISTEN_BACKLOG)
            load.publish(worker, 0)

        def get_request(self) -> tuple[socket.socket, Any]:
            load.publish(worker, len(self.active_associations))
            deadline = time.monotonic() + YIELD_SECONDS
            while load.busier_than_another(worker) and time.monotonic() < deadline:
                readable, _, _ = select.select([listener], [], [], YIELD_POLL_SECONDS)
                if not readable:
                    raise BlockingIOError("another worker took the connection")
            client, address = super().get_request()
            client.setblocking(True)
            load.publish(worker, len(self.active_associations) + 1)
            return client, address

        def server_close(self) -> None:
            load.mark_stopped(worker)
            super().server_close()

    return SharedListenerServer
