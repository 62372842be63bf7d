"""Revoking tokens and viewer sessions, and purging dead ones (from the CLI)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, exists, select, update

from node.errors import InvalidInput, NotFound
from node.index.viewing_models import ContextStudy, ViewerSession, ViewingContext
from node.services import NodeServices
from node.viewing import audit
from node.viewing.token_secrets import looks_like_token, token_keys


async def revoke_token(services: NodeServices, token: str) -> int:
    """Revoke a token and every session opened with it. Returns the number of sessions ended."""
    if not looks_like_token(token):
        raise InvalidInput("a token is 64 lowercase hexadecimal characters", field="token")
    now = services.clock.now()
    async with services.sessions() as session:
        context = await session.scalar(
            select(ViewingContext).where(ViewingContext.token_hash.in_(token_keys(token))))
        if context is None:
            raise NotFound("no such token")
        context.revoked_at = context.revoked_at or now
        result = await session.execute(
            update(ViewerSession)
            .where(ViewerSession.context_pk == context.id, ViewerSession.revoked_at.is_(None))
            .values(revoked_at=now))
        ended = int(getattr(result, "rowcount", 0))
        audit.record(session, "revoke", username=context.username, role=context.role,
                     context_pk=context.id, client_address="cli", sessionsEnded=ended)
        await session.commit()
    return ended


async def revoke_sessions(services: NodeServices, username: str) -> int:
    """End every open session of a user. Returns how many were ended."""
    now = services.clock.now()
    async with services.sessions() as session:
        result = await session.execute(
            update(ViewerSession)
            .where(ViewerSession.username == username, ViewerSession.revoked_at.is_(None),
                   ViewerSession.expires_at > now)
            .values(revoked_at=now))
        ended = int(getattr(result, "rowcount", 0))
        audit.record(session, "revoke-sessions", username=username, client_address="cli",
                     sessionsEnded=ended)
        await session.commit()
    return ended


async def purge(services: NodeServices, older_than_seconds: float = 86400.0) -> int:
    """Delete contexts that can no longer be used: the token's lifetime and every session of it
    ended more than `older_than_seconds` ago. The audit trail stays. Returns how many."""
    cutoff = services.clock.now() - timedelta(seconds=older_than_seconds)
    live_session = exists().where(ViewerSession.context_pk == ViewingContext.id,
                                  ViewerSession.expires_at > cutoff,
                                  ViewerSession.revoked_at.is_(None))
    async with services.sessions() as session:
        dead = select(ViewingContext.id).where(ViewingContext.expires_at < cutoff, ~live_session)
        ids = list((await session.scalars(dead)).all())
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            await session.execute(delete(ViewerSession).where(ViewerSession.context_pk.in_(chunk)))
            await session.execute(delete(ContextStudy).where(ContextStudy.context_pk.in_(chunk)))
            await session.execute(delete(ViewingContext).where(ViewingContext.id.in_(chunk)))
        await session.commit()
    return len(ids)
