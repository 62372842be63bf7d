"""What the stored studies take: totals for metrics and the storage quota, and recounting a
study whose instances were removed outside the index writer (`check --repair`).

The storage quota divides the room left between the processes admitting instances, in every
instance of the node sharing the database: each announces itself now and then in `settings`
(key "quota-admitter:<host>:<pid>", value the epoch seconds of its announcement), and reads
how many others did lately together with the totals."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Select, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from node.index.dicom_models import Instance, Series, Setting, Study
from node.index.write_lock import writing_on_loop

_ADMITTER = "quota-admitter:"


@dataclass(frozen=True)
class StoredTotals:
    studies: int
    instances: int
    bytes: int


def _totals_query() -> Select[int, int, int]:
    """One pass over the studies (each keeps its own sums: node/index/index_writer.py)."""
    return select(func.count(Study.id), func.coalesce(func.sum(Study.instance_count), 0),
                  func.coalesce(func.sum(Study.size_bytes), 0))


async def stored_totals(engine: AsyncEngine) -> StoredTotals:
    async with engine.connect() as conn:
        row = (await conn.execute(_totals_query())).one()
    return StoredTotals(int(row[0]), int(row[1]), int(row[2]))


@dataclass(frozen=True)
class QuotaReading:
    totals: StoredTotals
    # Other processes that announced themselves within the window asked for.
    other_admitters: int


def _others(conn: Connection, me: str, within: float) -> int:
    rows = conn.execute(select(Setting.key, Setting.value)
                        .where(Setting.key.startswith(_ADMITTER))).all()
    since = time.time() - within
    return sum(1 for key, value in rows
               if key != _ADMITTER + me and _epoch(value) >= since)


def _epoch(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0


async def read_for_quota(engine: AsyncEngine, me: str, within: float) -> QuotaReading:
    async with engine.connect() as conn:
        row = (await conn.execute(_totals_query())).one()
        others = await conn.run_sync(_others, me, within)
    return QuotaReading(StoredTotals(int(row[0]), int(row[1]), int(row[2])), others)


def read_for_quota_in_thread(engine: Engine, me: str, within: float) -> QuotaReading:
    """read_for_quota in the calling thread, on the SQLite file's thread reader."""
    with engine.connect() as conn:
        row = conn.execute(_totals_query()).one()
        others = _others(conn, me, within)
    return QuotaReading(StoredTotals(int(row[0]), int(row[1]), int(row[2])), others)


async def announce_admitter(engine: AsyncEngine, me: str, forget_after: float) -> None:
    """This process admits instances (now); announcements older than `forget_after` go."""
    now = time.time()
    async with writing_on_loop(engine), engine.begin() as conn:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        await conn.execute(dialect.insert(Setting).values(key=_ADMITTER + me, value=str(now))
                           .on_conflict_do_update(index_elements=["key"],
                                                  set_={"value": str(now)}))
        old = [key for key, value in (await conn.execute(
            select(Setting.key, Setting.value).where(Setting.key.startswith(_ADMITTER))))
            if _epoch(value) < now - forget_after]
        if old:
            await conn.execute(delete(Setting).where(Setting.key.in_(old)))


async def recount(session: AsyncSession, study_pks: Collection[int]) -> None:
    """Set the studies' sums from their instances, in the caller's transaction."""
    if not study_pks:
        return
    def of_study(column: Any) -> Any:
        return (select(column).select_from(Instance)
                .join(Series, Instance.series_pk == Series.id)
                .where(Series.study_pk == Study.id).scalar_subquery())

    await session.execute(update(Study).where(Study.id.in_(list(study_pks))).values(
        size_bytes=of_study(func.coalesce(func.sum(Instance.size), 0)),
        instance_count=of_study(func.count(Instance.id))))
