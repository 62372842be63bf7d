"""Per-slide colour lookup tables (.cube), as the LUT API stores, returns and removes them.

One per slide: a second upload is a Conflict, so that a lab replaces a table on purpose
(DELETE, then POST) rather than by accident.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node.errors import Conflict
from pathology.cube import CubeLut, parse_cube
from pathology.pathology_models import SlideLut

Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class StoredLut:
    container_identifier: str
    title: str
    size: int
    digest: str
    cube: bytes


async def store_lut(sessions: Sessions, container_identifier: str, data: bytes) -> CubeLut:
    """Parse (in a worker thread: a 65^3 table takes a fraction of a second) and keep the
    .cube; CubeError names the line at fault, Conflict when the slide already has one."""
    cube = await asyncio.to_thread(parse_cube, data)
    conflict = Conflict(f"a .cube file already exists for slide {container_identifier}")
    try:
        async with sessions() as session, session.begin():
            if await session.get(SlideLut, container_identifier) is not None:
                raise conflict
            session.add(SlideLut(
                container_identifier=container_identifier,
                title=cube.title[:256],
                size=cube.size,
                digest=hashlib.sha256(data).hexdigest(),
                cube=data,
                uploaded_at=datetime.now(UTC),
            ))
    except IntegrityError as exc:
        # Two uploads raced: the loser learns the same thing as a later one would.
        raise conflict from exc
    return cube


async def lut_digest(sessions: Sessions, container_identifier: str) -> str | None:
    """The stored table's digest, without loading its bytes (asked on every LUT tile)."""
    async with sessions() as session:
        return (await session.execute(
            select(SlideLut.digest).where(SlideLut.container_identifier == container_identifier)
        )).scalar_one_or_none()


async def load_lut(sessions: Sessions, container_identifier: str) -> StoredLut | None:
    async with sessions() as session:
        row = await session.get(SlideLut, container_identifier)
    if row is None:
        return None
    return StoredLut(row.container_identifier, row.title, row.size, row.digest, row.cube)


async def delete_lut(sessions: Sessions, container_identifier: str) -> bool:
    async with sessions() as session, session.begin():
        result = await session.execute(
            delete(SlideLut).where(SlideLut.container_identifier == container_identifier))
    return bool(getattr(result, "rowcount", 0))
