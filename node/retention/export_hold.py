"""Studies being exported are never recycled: an export holds them (a row every instance's
recycling reads, node/index/recycling.py) from before it looks them up until its last byte is
sent, renewing the hold while it streams; a process that dies leaves a hold that lapses."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from node.index.recycling import (
    EXPORT_STALE,
    hold_for_export,
    release_export_hold,
    renew_export_hold,
)
from node.process.background import Periodic, to_completion
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
    async def renew() -> None:
        await renew_export_hold(engine, hold)
    # A failed renewal is logged and tried again at the next turn.
    renewing = Periodic(renew, RENEW_SECONDS, f"renewing export hold {hold}", at_once=False)
    renewing.start()
    try:
        yield
    finally:
        await renewing.stop()
        try:
            await to_completion(release_export_hold(engine, hold))
        except Exception as exc:  # the hold lapses by itself
            log.warning("export hold %d not released (%s)", hold, type(exc).__name__)
