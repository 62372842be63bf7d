"""The DICOM port shared by the worker processes, and which of them takes a new association.

All workers accept on one listening socket, made by the supervisor before it forks them
(node/process/workers.py). A new connection wakes every worker's accept loop; left to chance,
whichever wins the race takes it, and four associations from one modality could all land on one
process (one core) while the other idles. So each worker publishes how many associations it is
serving (node/process/connection_load.py), and a worker serving more than another live one leaves
a pending connection alone for a few milliseconds, so that the less busy one takes it. Never for
long: a worker that has hung must not hold up new associations.

Each connection accepted also takes one of the node's `dicom.max_associations` slots
(node/process/association_limit.py), held until its association's thread has ended; one accepted
when none is left is served only as far as answering its request with an A-ASSOCIATE-RJ
(node/dimse/ae_access.py, AssociationGate).
"""

from __future__ import annotations

import select
import socket
import socketserver
import threading
import time
from typing import Any

from pynetdicom.transport import ThreadedAssociationServer

from node.process.association_limit import AssociationLimit
from node.process.connection_load import (
    ASSOCIATION_YIELD_SECONDS,
    YIELD_POLL_SECONDS,
    ConnectionLoad,
)

LISTEN_BACKLOG = 128


def shared_server_class(listener: socket.socket, load: ConnectionLoad, worker: int,
                        limit: AssociationLimit,
                        base: type[ThreadedAssociationServer] = ThreadedAssociationServer,
                        ) -> type[SharedListenerServerBase]:
    """A pynetdicom server class that serves `listener` (bound by the supervisor) instead of
    binding its own socket, and takes its share of the connections (see the module docstring);
    `base` accepts each connection (node/dimse/pdu_guard.py without the fast path)."""

    # Connections accepted whose association has not been handed over yet: pynetdicom counts
    # only running associations, so a worker that had just accepted one published 0 again and
    # took the next one too (four associations opened at once went three to one worker, one to
    # the other). An association running on a socket still listed here is counted once: counted
    # twice, a worker that published in that moment looked busier than it was for up to
    # REFRESH_SECONDS, and the other took the next connection (3-1 again, in CI).
    starting: set[socket.socket] = set()
    # Connections holding one of the node's association slots.
    holding: set[socket.socket] = set()
    starting_lock = threading.Lock()

    class SharedListenerServer(SharedListenerServerBase, base):  # type: ignore[valid-type,misc]
        # The thread serving a connection waits for its association's end (to give the slot
        # back): it must not keep the process from exiting.
        daemon_threads = True

        @staticmethod
        def holds_slot(assoc: Any) -> bool:
            with starting_lock:
                return _socket_of(assoc) in holding

        def serving(self) -> int:
            with starting_lock:
                pending = set(starting)
            running = [assoc for assoc in self.active_associations
                       if _socket_of(assoc) not in pending]
            return len(pending) + len(running)

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
            load.publish(worker, self.serving())
            deadline = time.monotonic() + ASSOCIATION_YIELD_SECONDS
            while load.busier_than_another(worker) and time.monotonic() < deadline:
                readable, _, _ = select.select([listener], [], [], YIELD_POLL_SECONDS)
                if not readable:
                    raise BlockingIOError("another worker took the connection")
            client, address = super().get_request()
            client.setblocking(True)
            slot = limit.take(worker)
            with starting_lock:
                starting.add(client)
                if slot:
                    holding.add(client)
            load.publish(worker, self.serving())
            return client, address

        def process_request_thread(self, request: Any, client_address: Any) -> None:
            try:
                try:
                    super().process_request_thread(request, client_address)  # starts its thread
                finally:
                    with starting_lock:
                        starting.discard(request)
                assoc = next((assoc for assoc in self.active_associations
                              if _socket_of(assoc) is request), None)
                if assoc is not None:
                    assoc.join()
            finally:
                with starting_lock:
                    held = request in holding
                    holding.discard(request)
                if held:
                    limit.give_back(worker)

        def service_actions(self) -> None:
            # serve_forever calls it between accepts, and every REFRESH_SECONDS when idle
            # (node/dimse/server.py starts it so). pynetdicom's collects the garbage finished
            # associations leave, every 60 calls (node/dimse/fastpath/association_costs.py).
            super().service_actions()
            load.publish(worker, self.serving())

        def server_close(self) -> None:
            load.mark_stopped(worker)
            super().server_close()

        def shutdown(self) -> None:
            # pynetdicom's would also take the server off its AE's list of servers, where
            # make_server never put it (a ValueError, and the worker's stop cut short).
            socketserver.TCPServer.shutdown(self)
            self.server_close()

    return SharedListenerServer


class SharedListenerServerBase(ThreadedAssociationServer):
    """What shared_server_class makes, as the rest of the node sees it."""

    @staticmethod
    def holds_slot(assoc: Any) -> bool:
        """Whether the association's connection holds one of the node's slots."""
        raise NotImplementedError


def _socket_of(assoc: Any) -> socket.socket | None:
    """The accepted socket an association runs on (None once it is closed)."""
    return getattr(getattr(getattr(assoc, "dul", None), "socket", None), "socket", None)
