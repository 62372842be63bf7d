"""The roles table's statements (node/viewing/roles.py checks names and permissions)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from node.index.unique_rows import add_unique, delete_rows
from node.index.viewing_models import Role


async def insert_role(sessions: async_sessionmaker[AsyncSession], name: str,
                      permissions: Sequence[str]) -> bool:
    """Store a new role; False when a role of that name exists."""
    return await add_unique(sessions, Role(name=name, permissions=list(permissions),
                                           created_at=datetime.now(UTC)))


async def delete_role(sessions: async_sessionmaker[AsyncSession], name: str) -> bool:
    """Delete the role; False when there was none."""
    return await delete_rows(sessions, Role, Role.name == name)


async def role_rows(db: AsyncConnection | AsyncSession) -> list[tuple[str, list[str]]]:
    """(name, permissions) of every role, by name."""
    rows = (await db.execute(select(Role.name, Role.permissions).order_by(Role.name))).all()
    return [(row[0], list(row[1])) for row in rows]


async def role_row(db: AsyncConnection | AsyncSession, name: str
                   ) -> tuple[str, list[str]] | None:
    """(name, permissions) of the role; None when there is none."""
    row = (await db.execute(select(Role.name, Role.permissions).where(Role.name == name))).first()
    return None if row is None else (row[0], list(row[1]))
