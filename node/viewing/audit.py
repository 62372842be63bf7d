"""The audit trail: every token issued, redeemed, refused or revoked, in the database.

This is the one record of which patient data a request named; logs only say that something
happened (and to which context id), never for whom.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node.index.audit_queries import add_audit_event


def row(
    action: str, *, username: str = "", role: str = "", client_address: str = "",
    **detail: Any,
) -> dict[str, Any]:
    """An audit row's column values, for writers that insert rows in bulk."""
    return {"at": datetime.now(UTC), "action": action, "username": username[:64],
            "role": role[:64], "client_address": client_address[:64], "detail": detail}


def record(
    session: AsyncSession, action: str, *, username: str = "", role: str = "",
    context_pk: int | None = None, client_address: str = "", **detail: Any,
) -> None:
    """Add an audit row to the caller's transaction, so it commits with what it describes."""
    add_audit_event(session, action, username, role, context_pk, client_address, detail)


async def record_alone(
    sessions: async_sessionmaker[AsyncSession], action: str, *, username: str = "",
    role: str = "", context_pk: int | None = None, client_address: str = "", **detail: Any,
) -> None:
    """An audit row in a transaction of its own, for what was committed elsewhere (instances a
    viewer session stored through the ingest path's group commits)."""
    async with sessions() as session:
        record(session, action, username=username, role=role, context_pk=context_pk,
               client_address=client_address, **detail)
        await session.commit()
