"""The storage mapping table's statements (node/sources/storage_mapping.py normalises and
resolves)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node.index.mapping_models import StorageMappingRow
from node.index.unique_rows import add_unique, delete_rows


async def mapping_rows(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, str]]:
    """(host path, container path) of every mapping, by host path."""
    async with sessions() as session:
        rows = (await session.execute(
            select(StorageMappingRow.host_path, StorageMappingRow.container_path)
            .order_by(StorageMappingRow.host_path))).all()
    return [(row[0], row[1]) for row in rows]


async def insert_mapping(sessions: async_sessionmaker[AsyncSession], host_path: str,
                         container_path: str) -> bool:
    """Store a mapping; False when the host path has one."""
    return await add_unique(sessions, StorageMappingRow(
        host_path=host_path, container_path=container_path, created_at=datetime.now(UTC)))


async def delete_mapping(sessions: async_sessionmaker[AsyncSession], host_path: str) -> bool:
    """Delete the host path's mapping; False when there was none."""
    return await delete_rows(sessions, StorageMappingRow,
                             StorageMappingRow.host_path == host_path)
