"""Threads that run the ingest path's fsyncs beside its index commit (node/ingest/ingestor.py).

A call per ingested instance is handed over, so the hand-over itself counts: a
ThreadPoolExecutor builds a Future (a Condition and its locks), takes its shutdown lock and
looks at its idle threads on every submit, and `concurrent.futures.wait` installs a waiter on
each future: ~6% of the node's time holding the GIL while ingesting small instances (py-spy).
Here a call is a slotted object on a C queue, and its completion one lock, released by the
thread that ran it.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any


class Flush:
    """One call handed to the threads; `wait` returns once it ran, with what it raised."""

    __slots__ = ("_argument", "_call", "_done", "_error")

    def __init__(self, call: Callable[[Any], object], argument: Any) -> None:
        self._call = call
        self._argument = argument
        self._done = threading.Lock()
        self._done.acquire()
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._call(self._argument)
        except BaseException as exc:  # handed to the waiter
            self._error = exc
        finally:
            self._done.release()

    def wait(self) -> BaseException | None:
        """Block until the call ran; its exception, if any (not raised: the caller decides)."""
        self._done.acquire()
        self._done.release()
        return self._error


class FlushThreads:
    """A fixed set of daemon threads, started at first use. The calls wait on the disk, not
    the GIL, so a few threads serve every association of the process."""

    def __init__(self, count: int, name: str) -> None:
        self._count = count
        self._name = name
        self._queue: queue.SimpleQueue[Flush] = queue.SimpleQueue()
        self._lock = threading.Lock()
        # The process that started the threads: one forked after them has none, and starts
        # its own (with a queue of its own).
        self._pid = 0

    def start(self, call: Callable[[Any], object], argument: Any) -> Flush:
        if self._pid != os.getpid():
            self._start_threads()
        flush = Flush(call, argument)
        self._queue.put(flush)
        return flush

    def _start_threads(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.SimpleQueue()
            for index in range(self._count):
                threading.Thread(target=_serve, args=(self._queue,),
                                 name=f"{self._name}_{index}", daemon=True).start()
            self._pid = os.getpid()


def _serve(calls: queue.SimpleQueue[Flush]) -> None:
    while True:
        calls.get().run()
