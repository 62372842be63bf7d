"""What the stored studies take: totals for metrics and the storage quota, and recounting a
study whose instances were removed outside the index writer (`check --repair`)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from node.index.dicom_models import Instance, Series, Study


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


def stored_totals_in_thread(engine: Engine) -> StoredTotals:
    """stored_totals in the calling thread, on the SQLite file's thread reader."""
    with engine.connect() as conn:
        row = conn.execute(_totals_query()).one()
    return StoredTotals(int(row[0]), int(row[1]), int(row[2]))


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
