"""The ingest path's fsync threads (node/ingest/flush_threads.py): calls run beside each other and
beside the caller, and a call's exception reaches whoever waits for it."""

from __future__ import annotations

import os
import signal
import threading
import time

from node.ingest.flush_threads import FlushThreads


def test_calls_run_side_by_side_and_each_wait_returns_after_its_call() -> None:
    threads = FlushThreads(2, "test-flush")
    both_started = threading.Barrier(3, timeout=5)
    ran: list[str] = []

    def call(name: str) -> None:
        both_started.wait()  # only passes when both calls run at once, and the caller waits
        ran.append(name)

    flushes = [threads.start(call, "a"), threads.start(call, "b")]
    both_started.wait()
    assert [flush.wait() for flush in flushes] == [None, None]
    assert sorted(ran) == ["a", "b"]


def test_a_calls_exception_is_handed_to_its_waiter() -> None:
    threads = FlushThreads(1, "test-flush")

    def failing(path: str) -> None:
        raise OSError(5, "Input/output error", path)

    error = threads.start(failing, "/data/incoming/x.dcm").wait()
    assert isinstance(error, OSError) and error.filename == "/data/incoming/x.dcm"
    assert threads.start(len, "still serving").wait() is None


def test_a_forked_process_gets_threads_of_its_own_and_the_parents_serve_on() -> None:
    """The node's workers are forked: a child's calls must run in the child, and must not wake
    (and so starve) the parent's threads."""
    threads = FlushThreads(1, "test-flush")
    assert threads.start(len, "before the fork").wait() is None
    child = os.fork()
    if child == 0:
        ok = all(threads.start(len, str(n)).wait() is None for n in range(50))
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 10
    while (ended := os.waitpid(child, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            raise AssertionError("the forked process's calls never ran")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(ended[1]) == 0
    done = [threads.start(len, str(n)) for n in range(50)]
    assert [flush.wait() for flush in done] == [None] * 50
