"""Revoking tokens and viewer sessions, and purging dead ones (from the CLI)."""

from __future__ import annotations

from datetime import timedelta

from node.errors import InvalidInput, NotFound
from node.index.context_queries import purge_dead_contexts, revoke_context, revoke_user_sessions
from node.services import NodeServices
from node.viewing import audit
from node.viewing.token_secrets import looks_like_token, token_keys


async def revoke_token(services: NodeServices, token: str) -> int:
    """Revoke a token and every session opened with it. Returns the number of sessions ended."""
    if not looks_like_token(token):
        raise InvalidInput("a token is 64 lowercase hexadecimal characters", field="token")
    now = services.clock.now()
    async with services.sessions() as session:
        context, ended = await revoke_context(session, token_keys(token), now)
        if context is None:
            raise NotFound("no such token")
        audit.record(session, "revoke", username=context.username, role=context.role,
                     context_pk=context.id, client_address="cli", sessionsEnded=ended)
        await session.commit()
    return ended


async def revoke_sessions(services: NodeServices, username: str) -> int:
    """End every open session of a user. Returns how many were ended."""
    now = services.clock.now()
    async with services.sessions() as session:
        ended = await revoke_user_sessions(session, username, now)
        audit.record(session, "revoke-sessions", username=username, client_address="cli",
                     sessionsEnded=ended)
        await session.commit()
    return ended


async def purge(services: NodeServices, older_than_seconds: float = 86400.0) -> int:
    """Delete contexts that can no longer be used: the token's lifetime and every session of it
    ended more than `older_than_seconds` ago. The audit trail stays. Returns how many."""
    cutoff = services.clock.now() - timedelta(seconds=older_than_seconds)
    return await purge_dead_contexts(services.sessions, cutoff)
