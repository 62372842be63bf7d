"""Queries of the consistency check (node/storage/consistency.py): every instance row's file, a
partition at a time in the storage's path order, and removing rows whose file is gone."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node.index.dicom_models import Instance, Patient, Series, Study
from node.index.study_usage import recount

_CHUNK = 500

# (id, path, size, SOP Instance UID) of an instance row.
InstanceFileRow = tuple[int, str, int, str]


async def instance_file_partitions(
    sessions: async_sessionmaker[AsyncSession], ordered: bool, rows_per_partition: int
) -> AsyncIterator[Sequence[InstanceFileRow]]:
    """Every instance row, a partition at a time (an async step per row would cost more than
    what the caller does with it); with `ordered`, by path in byte order."""
    query = select(Instance.id, Instance.path, Instance.size, Instance.sop_uid)
    async with sessions() as session:
        if ordered:
            if session.get_bind().dialect.name == "postgresql":
                # Byte order, the order Python compares the storage paths in (not the locale's).
                query = query.order_by(Instance.path.collate("C"))
            else:
                query = query.order_by(Instance.path)
        result = await session.stream(query.execution_options(yield_per=rows_per_partition))
        async for partition in result.partitions():
            yield [tuple(row) for row in partition]  # type: ignore[misc]


async def remove_instance_rows(sessions: async_sessionmaker[AsyncSession], ids: list[int]) -> int:
    """Delete instance rows, and the series, studies and patients they leave empty."""
    if not ids:
        return 0
    async with sessions() as session, session.begin():
        series_pks: set[int] = set()
        for chunk in _chunks(ids):
            series_pks.update(await session.scalars(
                select(Instance.series_pk).where(Instance.id.in_(chunk))
            ))
            await session.execute(delete(Instance).where(Instance.id.in_(chunk)))
        study_pks = await _delete_emptied(session, series_pks, Series, Series.study_pk,
                                          Instance.id, Instance.series_pk)
        await recount(session, study_pks)
        patient_pks = await _delete_emptied(session, study_pks, Study, Study.patient_pk,
                                            Series.id, Series.study_pk)
        await _delete_emptied(session, patient_pks, Patient, None, Study.id, Study.patient_pk)
    return len(ids)


async def _delete_emptied(session: AsyncSession, pks: set[int], model: Any,
                          parent_key: Any, child_id: Any, child_key: Any) -> set[int]:
    """Delete the rows of `model` among `pks` that no child row points to any more; the
    parents' keys (by `parent_key`) of all the rows among `pks`."""
    parents: set[int] = set()
    for chunk in _chunks(sorted(pks)):
        if parent_key is not None:
            parents.update(await session.scalars(select(parent_key).where(model.id.in_(chunk))))
        await session.execute(delete(model).where(
            model.id.in_(chunk), ~select(child_id).where(child_key == model.id).exists()))
    return parents


def _chunks(values: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]
