"""A clock the tests move, so that lifetimes end without the test waiting for them."""

from __future__ import annotations

from datetime import datetime, timedelta

from node.clock import Clock


class MovableClock(Clock):
    """The real clock plus an offset the test sets: both the wall clock and the monotonic one
    move by it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        """Move both clocks by `seconds` (back, when negative)."""
        self.offset += seconds

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return super().monotonic() + self.offset
