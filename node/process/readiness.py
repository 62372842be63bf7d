"""Whether this node can do its work right now, for a load balancer's readiness probe.

Two parts, each checked for real on every probe and cheaply: the index's database answers a
query (node/index/reachability.py), and the storage takes a new file (Storage.check_writable).
Each has a deadline, so that a hung NFS mount or database makes the probe fail, not hang.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from node.index.reachability import check_index
from node.services import NodeServices

log = logging.getLogger(__name__)

# A part that takes longer than this to answer counts as failing.
CHECK_SECONDS = 2.0


async def failing_parts(services: NodeServices) -> list[str]:
    """The names of the parts that failed their check ("database", "storage"); [] when ready."""
    checks: dict[str, Callable[[], Awaitable[None]]] = {
        "database": lambda: check_index(services.engine),
        "storage": lambda: asyncio.to_thread(services.storage.check_writable),
    }
    results = await asyncio.gather(*(_passes(name, check) for name, check in checks.items()))
    return [name for name, ok in zip(checks, results, strict=True) if not ok]


async def _passes(name: str, check: Callable[[], Awaitable[None]]) -> bool:
    try:
        await asyncio.wait_for(check(), CHECK_SECONDS)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # any failure of the part is the answer, not an error
        # The type only: a message may carry a path or a database URL with its password.
        log.warning("readiness: %s failing (%s)", name, type(exc).__name__)
        return False
    return True
