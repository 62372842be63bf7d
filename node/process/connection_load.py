"""How busy each worker process is, for sharing new connections among them
(node/process/workers.py).

A worker serving more connections than another live one leaves a new connection to it for a
few milliseconds (node/dimse/shared_listener.py, node/process/http_listener.py): left to the race
between their accept loops, a burst of long-lived connections (four associations from one
modality, a viewer's keep-alive connections) could all land on one process, one core.
"""

from __future__ import annotations

import ctypes
import multiprocessing

# A slot's value while its worker is not running.
NOT_RUNNING = -1
# How long a busier worker leaves a pending connection to a less busy one.
YIELD_SECONDS = 0.05
# The same for a DICOM association, which is worth the longer wait: it lasts for many requests,
# and its set-up takes both the accepting worker and the requestor 10-20 ms of CPU, so on a
# busy two-core machine the other worker's accept thread waited more than 50 ms for a core
# (four associations opened at once went three to one, one to the other, in 1 of 6 tries).
ASSOCIATION_YIELD_SECONDS = 0.25
# How often it looks whether the other worker has taken it.
YIELD_POLL_SECONDS = 0.002
# How often an idle worker publishes its count again: the count published when a connection
# was accepted stays too high once connections end, and a worker that looks too
# busy would be left the next connection by the other one.
REFRESH_SECONDS = 0.05


class ConnectionLoad:
    """Open connections (DICOM associations, or HTTP connections) per worker, in memory the
    forked workers share. One writer per slot: the worker it belongs to; the supervisor marks a
    dead worker's slot."""

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
