"""Background work every instance can see: one row per job (a study's retrieval, its preload).

Several instances share one database; whichever claims a queued row does the job, keeps its
`heartbeat_at` fresh while it runs, and writes the outcome. A row whose heartbeat went stale
belongs to an instance that died, and another one claims it again (node/process/jobs.py).

`(kind, key)` is unique: asking twice for the same study's retrieval finds the same row, so a
study is retrieved once however many instances and viewing contexts ask for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from node.index.dicom_models import Base


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("kind", "key", name="uq_jobs_kind_key"),
        Index("ix_jobs_state_kind", "state", "kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "retrieve", "preload" or "post-import".
    kind: Mapped[str] = mapped_column(String(16))
    # What the job is about (a Study Instance UID; a POST import's viewing context id).
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


class ImportOutcome(Base):
    """How one object of a POST import ended (imported, already there, failed), written with
    the import's progress: a resumed import skips these objects and counts them as before."""

    __tablename__ = "import_outcomes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    context_pk: Mapped[int] = mapped_column(ForeignKey("viewing_contexts.id", ondelete="CASCADE"),
                                            index=True)
    # The object: its place in the request (a field path or a host path) and its key.
    item: Mapped[str] = mapped_column(Text)
    # "done", "duplicate" or "failed".
    outcome: Mapped[str] = mapped_column(String(16))
    study_uid: Mapped[str] = mapped_column(String(64), default="")
    sop_uid: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")


class SealedCredentials(Base):
    """A POST request's cloud keys and WADO headers, encrypted (node/sources/sealed_secrets.py),
    kept only while its import may still need them: deleted when the import is done or the token
    expires."""

    __tablename__ = "sealed_credentials"

    context_pk: Mapped[int] = mapped_column(
        ForeignKey("viewing_contexts.id", ondelete="CASCADE"), primary_key=True)
    # Nonce + AES-GCM ciphertext of the secrets' JSON, bound to context_pk.
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
