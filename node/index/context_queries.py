"""Queries on stored viewing contexts: what a redeemed context opens, studies added to a
context after it was issued, their retrieval states, revoking and purging."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Update, delete, exists, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from node.index.viewing_models import (
    WAITING_FOR_RETRIEVAL,
    ContextStudy,
    ViewerSession,
    ViewingContext,
)


@dataclass(frozen=True)
class ContextOpening:
    """What a context opens: its kind, the stored request (accNum included even when the
    browser must not see it), its options, and its studies' (UID, purpose) in order."""

    kind: str
    request: dict[str, Any]
    options: dict[str, Any]
    studies: tuple[tuple[str, str], ...]


async def context_opening(session: AsyncSession, context_pk: int,
                          with_studies: bool = True) -> ContextOpening | None:
    """The context's opening; None when there is no such context. Without `with_studies`
    the studies are not read (empty)."""
    if not with_studies:
        found = await session.get(ViewingContext, context_pk)
    else:
        found = await context_with_studies(session, context_pk)
    if found is None:
        return None
    studies = tuple((row.study_uid, row.purpose) for row in found.studies) if with_studies else ()
    return ContextOpening(found.kind, found.request, found.options, studies)


async def add_context_study(session: AsyncSession, context_pk: int, position: int,
                            study_uid: str, purpose: str, state: str, source: str) -> None:
    """Add a study to a context at `position` (not preloaded), committed."""
    session.add(ContextStudy(context_pk=context_pk, position=position, study_uid=study_uid,
                             purpose=purpose, preload=False, state=state, source=source))
    await session.commit()


async def context_with_studies(session: AsyncSession, context_pk: int
                               ) -> ViewingContext | None:
    """The context with its study rows loaded; None when there is no such context."""
    return await session.scalar(
        select(ViewingContext).where(ViewingContext.id == context_pk)
        .options(selectinload(ViewingContext.studies)))


async def revoke_context(session: AsyncSession, token_keys: Collection[str], now: datetime
                         ) -> tuple[ViewingContext | None, int]:
    """Revoke the token's context (if not yet) and end its open sessions; (the context, None
    when no context has the token; the number of sessions ended). Not committed."""
    context = await session.scalar(
        select(ViewingContext).where(ViewingContext.token_hash.in_(list(token_keys))))
    if context is None:
        return None, 0
    context.revoked_at = context.revoked_at or now
    result = await session.execute(
        update(ViewerSession)
        .where(ViewerSession.context_pk == context.id, ViewerSession.revoked_at.is_(None))
        .values(revoked_at=now))
    return context, int(getattr(result, "rowcount", 0))


async def revoke_user_sessions(session: AsyncSession, username: str, now: datetime) -> int:
    """End every open session of the user; how many. Not committed."""
    result = await session.execute(
        update(ViewerSession)
        .where(ViewerSession.username == username, ViewerSession.revoked_at.is_(None),
               ViewerSession.expires_at > now)
        .values(revoked_at=now))
    return int(getattr(result, "rowcount", 0))


async def purge_dead_contexts(sessions: async_sessionmaker[AsyncSession], cutoff: datetime
                              ) -> int:
    """Delete the contexts that expired before `cutoff` and have no session alive after it,
    with their sessions and study rows (the audit trail stays); how many."""
    live_session = exists().where(ViewerSession.context_pk == ViewingContext.id,
                                  ViewerSession.expires_at > cutoff,
                                  ViewerSession.revoked_at.is_(None))
    async with sessions() as session:
        dead = select(ViewingContext.id).where(ViewingContext.expires_at < cutoff, ~live_session)
        ids = list((await session.scalars(dead)).all())
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            await session.execute(delete(ViewerSession).where(ViewerSession.context_pk.in_(chunk)))
            await session.execute(delete(ContextStudy).where(ContextStudy.context_pk.in_(chunk)))
            await session.execute(delete(ViewingContext).where(ViewingContext.id.in_(chunk)))
        await session.commit()
    return len(ids)


def waiting_update(study_uid: str, current: tuple[str, ...]) -> Update:
    """The UPDATE of a study's context rows still in one of the `current` states; it says
    WAITING_FOR_RETRIEVAL as well, so that it finds them through the partial index."""
    return (update(ContextStudy)
            .where(ContextStudy.study_uid == study_uid, text(WAITING_FOR_RETRIEVAL),
                   ContextStudy.state.in_(current)))


async def set_waiting_study_state(sessions: async_sessionmaker[AsyncSession], study_uid: str,
                                  state: str, current: tuple[str, ...], message: str = ""
                                  ) -> None:
    """Set the state (and message) of the study's context rows still in a `current` state
    (a retrieval's progress, written into every context waiting for the study)."""
    async with sessions() as session:
        await session.execute(waiting_update(study_uid, current).values(state=state,
                                                                        message=message))
        await session.commit()


async def set_retrieval_progress(sessions: async_sessionmaker[AsyncSession], study_uid: str,
                                 received: int, announced: int) -> None:
    """Write a running retrieval's counts into the study's context rows it is retrieving for."""
    async with sessions() as session:
        await session.execute(waiting_update(study_uid, ("retrieving",)).values(
            instances_received=received, instances_announced=announced))
        await session.commit()


async def reopen_failed_retrieval(session: AsyncSession, context_pk: int, study_uid: str
                                  ) -> bool:
    """Put the context's failed retrieval of the study back to pending, its message and
    progress cleared, committed; False when there was none to reopen (the study is not
    failed, was never retrieved, or another request reopened it first: one UPDATE decides,
    so two requests at once reopen it once)."""
    reopened = await session.execute(
        update(ContextStudy)
        .where(ContextStudy.context_pk == context_pk, ContextStudy.study_uid == study_uid,
               ContextStudy.state == "failed", ContextStudy.source != "")
        .values(state="pending", message="", instances_received=0, instances_announced=0))
    await session.commit()
    return int(getattr(reopened, "rowcount", 0)) > 0
