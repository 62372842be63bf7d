"""Viewer sessions: redeeming a context's token, and the context a session cookie opens.

Redemption is one conditional UPDATE (not yet redeemed, not revoked, not expired): of two
simultaneous redemptions of the same token exactly one wins, whatever the number of node
instances sharing the database.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node.index.viewing_models import ViewerSession, ViewingContext


async def claim_redemption(session: AsyncSession, token_keys: Collection[str], now: datetime
                           ) -> tuple[bool, ViewingContext | None]:
    """Mark the token's context redeemed if it may still be; (whether this call did, the
    context whatever its state, None when no context has the token). Not committed."""
    result = await session.execute(
        update(ViewingContext)
        .where(ViewingContext.token_hash.in_(list(token_keys)),
               ViewingContext.redeemed_at.is_(None),
               ViewingContext.revoked_at.is_(None),
               ViewingContext.expires_at > now)
        .values(redeemed_at=now)
    )
    context = await session.scalar(
        select(ViewingContext).where(ViewingContext.token_hash.in_(list(token_keys))))
    return getattr(result, "rowcount", 0) == 1, context


def add_viewer_session(session: AsyncSession, cookie_hash: str, context: ViewingContext,
                       client_address: str, created_at: datetime, expires_at: datetime) -> None:
    """Add the session of a redeemed context to `session`'s transaction."""
    session.add(ViewerSession(
        cookie_hash=cookie_hash, context_pk=context.id, username=context.username,
        client_address=client_address[:64], created_at=created_at, expires_at=expires_at,
    ))


async def live_session_context(sessions: async_sessionmaker[AsyncSession], cookie_hash: str,
                               now: datetime) -> int | None:
    """The context of the session with this cookie; None when there is none, or it expired
    or was revoked."""
    async with sessions() as session:
        return await session.scalar(select(ViewerSession.context_pk).where(
            ViewerSession.cookie_hash == cookie_hash,
            ViewerSession.revoked_at.is_(None),
            ViewerSession.expires_at > now,
        ))
