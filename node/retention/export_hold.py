"""Studies being exported are never recycled: an export holds them (a row every instance's
recycling reads, node/index/recycling.py) from before it looks them up until its last byte is
sent, renewing the hold while it streams; a process that dies leaves a hold that lapses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from node.index.recycling import (
    EXPORT_STALE,
    hold_for_export,
    release_export_hold,
    renew_export_hold,
)
from node.process.jobs import worker_name
from node.services import NodeServices

log = logging.getLogger(__name__)

# The hold is renewed this often, well within EXPORT_STALE.
RENEW_SECONDS = EXPORT_STALE.total_seconds() / 4


@contextlib.asynccontextmanager
async def held_for_export(services: NodeServices, study_uids: Sequence[str]
                          ) -> AsyncIterator[None]:
    """The studies stay while the body runs (on every instance sharing the database)."""
    engine = services.engine
    hold = await hold_for_export(engine, study_uids, worker_name(services.config.instance_name))
    renewing = asyncio.create_task(_renew(services, hold))
    try:
        yield
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
        try:
            await asyncio.shield(release_export_hold(engine, hold))
        except Exception as exc:  # the hold lapses by itself
            log.warning("export hold %d not released (%s)", hold, type(exc).__name__)


async def _renew(services: NodeServices, hold: int) -> None:
    while True:
        await asyncio.sleep(RENEW_SECONDS)
        try:
            await renew_export_hold(services.engine, hold)
        except Exception as exc:  # the next renewal tries again
            log.warning("export hold %d not renewed (%s)", hold, type(exc).__name__)
