"""`dicom.max_associations` for the whole node, when worker processes share its DICOM port.

Each worker's pynetdicom counts only its own associations: with two workers, a limit of 16
admitted 32. So the workers take slots from one count in memory they share (made by the
supervisor before it forks them, node/process/workers.py), each holding one for every connection it
serves, from accept until the association's thread ends (node/dimse/shared_listener.py).

The count is kept per worker, so that the slots of a worker that died are given back at once
(the supervisor clears its count), and taking a slot happens under a lock that a dying holder
cannot keep: an fcntl record lock, which the kernel releases with its process (a semaphore held
by a worker killed at the wrong moment would stop every association of the node).
"""

from __future__ import annotations

import ctypes
import fcntl
import multiprocessing
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class AssociationLimit:
    """At most `limit` connections at once over all workers."""

    def __init__(self, workers: int, limit: int) -> None:
        self.limit = limit
        self._held = multiprocessing.RawArray(ctypes.c_int, workers)
        # Unlinked at once; the workers inherit its descriptor. fcntl locks belong to a process,
        # so the threads of one worker also take a lock of their own.
        fd, path = tempfile.mkstemp(prefix="association-limit-")
        os.unlink(path)
        self._lock_fd = fd
        self._thread_lock = threading.Lock()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            fcntl.lockf(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(self._lock_fd, fcntl.LOCK_UN)

    def take(self, worker: int) -> bool:
        """A slot for one of `worker`'s connections; False when all are taken."""
        with self._locked():
            if sum(self._held) >= self.limit:
                return False
            self._held[worker] += 1
            return True

    def give_back(self, worker: int) -> None:
        with self._locked():
            self._held[worker] = max(0, self._held[worker] - 1)

    def clear(self, worker: int) -> None:
        """The slots of a worker that has died (the supervisor's call)."""
        with self._locked():
            self._held[worker] = 0

    def held(self) -> int:
        return sum(self._held)
