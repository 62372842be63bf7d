"""Adding and deleting one keyed row, for the small tables an operator manages from the CLI
(roles, hanging protocols, storage mappings): a duplicate key or a missing row is an answer
(False) for the caller to word, not an exception of the database's."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node.index.dicom_models import Base


async def add_unique(sessions: async_sessionmaker[AsyncSession], row: Base) -> bool:
    """Commit the new row; False when its key (or a unique constraint) is taken."""
    async with sessions() as session:
        session.add(row)
        try:
            await session.commit()
        except IntegrityError:
            return False
    return True


async def delete_rows(sessions: async_sessionmaker[AsyncSession], model: type[Base],
                      *where: ColumnElement[Any]) -> bool:
    """Delete the model's rows matching `where`, committed; False when there were none."""
    async with sessions() as session:
        result = await session.execute(delete(model).where(*where))
        await session.commit()
    return bool(getattr(result, "rowcount", 0))
