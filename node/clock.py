"""The node's clock: one object the services hand to whatever measures time.

Token and session lifetimes and job heartbeats are compared in SQL with the wall clock; snapshot
and cache ages with the monotonic clock. Code that reads either through `NodeServices.clock`
can be given a clock a test moves forward, instead of the test waiting for the time to pass.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    """The real clock."""

    def now(self) -> datetime:
        """The wall-clock time in UTC, as the database stores and compares it."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for ages and intervals."""
        return time.monotonic()


REAL_CLOCK = Clock()
