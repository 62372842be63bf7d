"""Audit rows: added to the caller's transaction, so that one commits with what it records
(node/viewing/audit.py says what goes in them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from node.index.viewing_models import AuditEvent


def add_audit_event(session: AsyncSession, action: str, username: str, role: str,
                    context_pk: int | None, client_address: str, detail: dict[str, Any]
                    ) -> None:
    """Add one audit row to `session` (written at its next flush or commit)."""
    session.add(AuditEvent(
        at=datetime.now(UTC), action=action, username=username[:64], role=role[:64],
        context_pk=context_pk, client_address=client_address[:64], detail=detail,
    ))
