"""The hanging protocols table's statements (node/viewing/hanging_protocols.py checks and chooses).

A protocol comes back as its row: (id, name, scope, owner, rows, columns, rules as JSON).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from node.index.unique_rows import add_unique, delete_rows
from node.index.viewing_models import HangingProtocol

ProtocolRow = tuple[int, str, str, str, int, int, list[dict[str, Any]]]

_COLUMNS = (HangingProtocol.id, HangingProtocol.name, HangingProtocol.scope,
            HangingProtocol.owner, HangingProtocol.rows, HangingProtocol.columns,
            HangingProtocol.rules)


def _row(r: Any) -> ProtocolRow:
    return (r[0], r[1], r[2], r[3], r[4], r[5], list(r[6]))


async def insert_protocol(
    sessions: async_sessionmaker[AsyncSession], name: str, scope: str, owner: str, rows: int,
    columns: int, rules: list[dict[str, Any]],
) -> ProtocolRow | None:
    """Store a new protocol; None when the scope and owner have one of that name."""
    row = HangingProtocol(name=name, scope=scope, owner=owner, rows=rows, columns=columns,
                          rules=rules, created_at=datetime.now(UTC))
    if not await add_unique(sessions, row):
        return None
    return (row.id, row.name, row.scope, row.owner, row.rows, row.columns, list(row.rules))


async def delete_protocol(sessions: async_sessionmaker[AsyncSession], name: str, scope: str,
                          owner: str) -> bool:
    """Delete the protocol; False when there was none."""
    return await delete_rows(sessions, HangingProtocol, HangingProtocol.name == name,
                             HangingProtocol.scope == scope, HangingProtocol.owner == owner)


async def protocol_rows_by_owner(sessions: async_sessionmaker[AsyncSession]
                                 ) -> list[ProtocolRow]:
    """Every protocol, by scope, owner and name (the CLI's listing)."""
    async with sessions() as session:
        rows = (await session.execute(select(*_COLUMNS).order_by(
            HangingProtocol.scope, HangingProtocol.owner, HangingProtocol.name))).all()
    return [_row(r) for r in rows]


async def protocol_rows_for(db: AsyncConnection | AsyncSession, username: str, role: str
                            ) -> list[ProtocolRow]:
    """The user's, the role's and the global protocols, by name."""
    p = HangingProtocol
    rows = (await db.execute(select(*_COLUMNS)
                             .where(or_((p.scope == "user") & (p.owner == username),
                                        (p.scope == "role") & (p.owner == role),
                                        p.scope == "global"))
                             .order_by(p.name))).all()
    return [_row(r) for r in rows]


async def protocol_rows(db: AsyncConnection | AsyncSession) -> list[ProtocolRow]:
    """Every protocol, by name."""
    rows = (await db.execute(select(*_COLUMNS).order_by(HangingProtocol.name))).all()
    return [_row(r) for r in rows]
