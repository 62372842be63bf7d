"""Studies protected from recycling (`python -m node protect`), by Study Instance UID."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from node.index.retention_models import ProtectedStudy
from node.index.viewing_models import AuditEvent


async def set_protected(engine: AsyncEngine, study_uid: str, protected: bool, who: str) -> bool:
    """Protect or unprotect a study (audited); whether that changed anything."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        if protected:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            result = await conn.execute(
                dialect.insert(ProtectedStudy)
                .values(study_uid=study_uid, protected_at=now, protected_by=who[:64])
                .on_conflict_do_nothing(index_elements=["study_uid"]))
        else:
            result = await conn.execute(
                delete(ProtectedStudy).where(ProtectedStudy.study_uid == study_uid))
        changed = bool(result.rowcount)
        if changed:
            await conn.execute(insert(AuditEvent).values(
                at=now, action="protect" if protected else "unprotect", username=who[:64],
                role="", context_pk=None, client_address="", detail={"studyUID": study_uid}))
    return changed


async def protected_uids(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(select(ProtectedStudy.study_uid))).scalars())
