"""What the index says about the node as a whole, for GET /metrics: stored studies and bytes,
live viewer sessions, background jobs by kind and state. Each is one small query (studies
carry their own sums, node/index/index_writer.py), cheap enough for every scrape."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from node.index.job_models import Job
from node.index.study_usage import StoredTotals, stored_totals
from node.index.viewing_models import ViewerSession


@dataclass(frozen=True)
class NodeFigures:
    stored: StoredTotals
    live_sessions: int
    # (kind, state) -> how many jobs
    jobs: dict[tuple[str, str], int]


async def node_figures(engine: AsyncEngine) -> NodeFigures:
    stored = await stored_totals(engine)
    now = datetime.now(UTC)
    async with engine.connect() as conn:
        sessions = (await conn.execute(
            select(func.count(ViewerSession.id))
            .where(ViewerSession.expires_at > now, ViewerSession.revoked_at.is_(None)))).scalar()
        jobs = (await conn.execute(
            select(Job.kind, Job.state, func.count(Job.id)).group_by(Job.kind, Job.state))).all()
    return NodeFigures(stored, int(sessions or 0),
                       {(kind, state): int(count) for kind, state, count in jobs})
