"""Background work every instance can see: one row per job (a study's retrieval, its preload).

Several instances share one database; whichever claims a queued row does the job, keeps its
`heartbeat_at` fresh while it runs, and writes the outcome. A row whose heartbeat went stale
belongs to an instance that died, and another one claims it again (node/jobs.py).

`(kind, key)` is unique: asking twice for the same study's retrieval finds the same row, so a
study is retrieved once however many instances and viewing contexts ask for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from node.index.models import Base


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("kind", "key", name="uq_jobs_kind_key"),
        Index("ix_jobs_state_kind", "state", "kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "retrieve" or "preload".
    kind: Mapped[str] = mapped_column(String(16))
    # What the job is about (a Study Instance UID).
    key: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # queued -> running -> done | failed; a stale running row is claimed again.
    state: Mapped[str] = mapped_column(String(16), default="queued")
    # The instance doing it (its instance name and process id), "" when nobody is.
    claimed_by: Mapped[str] = mapped_column(String(128), default="")
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # done: "available" or what was done; failed: why.
    outcome: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
