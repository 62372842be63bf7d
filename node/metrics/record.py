"""Counting, called where things happen: the ingest path, the DICOM handlers, the token
routes, the HTTP middleware.

Each call is a dictionary lookup and one increment (a lock and a write into a memory-mapped
file in multiprocess mode, about a microsecond): cheap enough for every instance of the C-STORE
hot path. The instruments are built on first use (node/metrics/instruments.py says why).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from node.metrics.instruments import Instruments

T = TypeVar("T")

# An origin's prefix (node/index/models.Instance.origin) -> the door it names.
DOORS = {"dicom": "c-store", "retrieve": "retrieve", "import": "import", "api": "post",
         "stow": "stow", "repair": "repair"}

_lock = threading.Lock()
_built: list[Instruments] = []
# (instrument name, label values) -> the labelled child, so that the hot path skips the
# library's own labels() lookup and its lock.
_children: dict[tuple[str, tuple[str, ...]], Any] = {}


def instruments() -> Instruments:
    if not _built:
        with _lock:
            if not _built:
                from node.metrics.exposition import new_instruments

                _built.append(new_instruments())
    return _built[0]


def _child(name: str, *labels: str) -> Any:
    key = (name, labels)
    child = _children.get(key)
    if child is None:
        metric = getattr(instruments(), name)
        child = _children.setdefault(key, metric.labels(*labels) if labels else metric)
    return child


def door_of(origin: str) -> str:
    """"dicom:AE" -> "c-store", "api:aws-bucket" -> "post", ...; the sender is left out."""
    return DOORS.get(origin.partition(":")[0], "other")


def instance_received(origin: str, outcome: str) -> None:
    _child("received", door_of(origin), outcome).inc()


def instance_failed(origin: str) -> None:
    _child("ingest_failed", door_of(origin)).inc()


def store_failure(status: int) -> None:
    _child("store_failures", f"0x{status:04X}").inc()


def association_count(count: int) -> None:
    _child("associations").set(count)


def tokens_issued(api: str, count: int = 1) -> None:
    _child("tokens_issued", api).inc(count)


def token_redeemed() -> None:
    _child("tokens_redeemed").inc()


def token_refused(reason: str) -> None:
    _child("tokens_refused", reason).inc()


def http_request(method: str, route: str, status: int, seconds: float) -> None:
    _child("http", method, route, str(status)).observe(seconds)


def studies_deleted(reason: str, count: int, size: int) -> None:
    _child("deleted", reason).inc(count)
    _child("deleted_bytes", reason).inc(size)


def dimse_timed(service: str) -> Callable[[Callable[..., Iterator[T]]],
                                          Callable[..., Iterator[T]]]:
    """Wrap a pynetdicom handler that yields its responses: the request is counted and timed
    from the call to the last response (or until pynetdicom stops asking)."""
    def wrap(handler: Callable[..., Iterator[T]]) -> Callable[..., Iterator[T]]:
        @functools.wraps(handler)
        def timed(*args: Any) -> Iterator[T]:
            started = time.perf_counter()
            try:
                yield from handler(*args)
            finally:
                _child("dimse", service).observe(time.perf_counter() - started)
        return timed
    return wrap
