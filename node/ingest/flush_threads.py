"""Threads that run the ingest path's fsyncs beside its index commit (node/ingest/ingestor.py).

A call per ingested instance is handed over, so the hand-over itself counts: a
ThreadPoolExecutor builds a Future (a Condition and its locks), takes its shutdown lock and
looks at its idle threads on every submit, and `concurrent.futures.wait` installs a waiter on
each future: ~6% of the node's time holding the GIL while ingesting small instances (py-spy).
Here a call is a slotted object on a C queue, and its completion one lock, released by the
thread that ran it. The threads are woken through an eventfd, written outside the GIL: woken
by the queue itself, a thread of a loaded machine often ran at once in the waker's place while
the waker still held the GIL, and every other thread of the process waited (py-spy, STOW-RS of
small instances with four clients: 65% of the ingest threads' samples holding the GIL were at
that `put`; none with the eventfd).
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
        # A count of queued calls (an eventfd) the threads wait on, made with them in the
        # process that uses them (`_pid`): a process forked after them has neither the threads
        # nor a count of its own, and makes both.
        self._ready = -1
        self._pid = 0

    def start(self, call: Callable[[Any], object], argument: Any) -> Flush:
        if self._pid != os.getpid():
            self._start_threads()
        flush = Flush(call, argument)
        self._queue.put(flush)
        # The wake-up outside the GIL: woken by a lock or a queue, a thread of a loaded machine
        # often ran at once in the waker's place while the waker still held the GIL, and every
        # thread of the process waited for it (py-spy: 65% of the ingest threads' GIL time
        # at the put).
        os.eventfd_write(self._ready, 1)
        return flush

    def _start_threads(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.SimpleQueue()
            self._ready = os.eventfd(0, os.EFD_SEMAPHORE | os.EFD_CLOEXEC)
            for index in range(self._count):
                threading.Thread(target=_serve, args=(self._queue, self._ready),
                                 name=f"{self._name}_{index}", daemon=True).start()
            self._pid = os.getpid()


def _serve(calls: queue.SimpleQueue[Flush], ready: int) -> None:
    """One thread: a call for each count taken from `ready` (one per call queued)."""
    while True:
        os.eventfd_read(ready)
        calls.get_nowait().run()
