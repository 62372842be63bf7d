"""The ingest path's fsync threads (node/ingest/flush_threads.py): calls run beside each other and
beside the caller, and a call's exception reaches whoever waits for it."""

from __future__ import annotations

import threading

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
