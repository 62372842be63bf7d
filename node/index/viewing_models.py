"""The viewer integration's records: roles, hanging protocols, viewing contexts (tokens), viewer
sessions, and the audit trail.

Tokens and session cookies are stored only as SHA-256 digests: a copy of the database does not
let anyone open a study. Timestamps are UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from node.index.dicom_models import Base

# The context studies still waiting for a retrieval: the only rows looked up by study UID
# (node/viewing/retrievals.py), so the only ones indexed by it. A query uses the partial index
# only when its WHERE carries this very term (SQLite does not infer it from a narrower IN list).
WAITING_FOR_RETRIEVAL = "state IN ('pending', 'retrieving')"


class Role(Base):
    """A role a caller names in `role=`; it must exist, and it decides which features show."""

    __tablename__ = "roles"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Sorted list of permission names (node.viewing.roles.PERMISSIONS).
    permissions: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class HangingProtocol(Base):
    """A layout and the rules placing series in it; owned by a user, a role, or nobody (global)."""

    __tablename__ = "hanging_protocols"
    __table_args__ = (UniqueConstraint("scope", "owner", "name", name="uq_protocol_scope_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    # "user", "role" or "global"; owner is the user or role name ("" for global).
    scope: Mapped[str] = mapped_column(String(8))
    owner: Mapped[str] = mapped_column(String(64), default="")
    rows: Mapped[int] = mapped_column(Integer)
    columns: Mapped[int] = mapped_column(Integer)
    # [{"cell": 1, "modality": "CT", "bodyPart": "CHEST", "description": "*AXIAL*"}, ...]
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ViewingContext(Base):
    """What one token opens, with every option of the request that issued it."""

    __tablename__ = "viewing_contexts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # "single" (obscurl), "primary" or "secondary" (multimonitor).
    kind: Mapped[str] = mapped_column(String(16), default="single")
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(64))
    # "studies" (open the listed studies) or "history" (the user picks from the history).
    display: Mapped[str] = mapped_column(String(8))
    # The request as understood: studyUID, accNum, patientID, idIssuer, historyList, ...
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    # anonymize, hideSearch, hideDocuments, hideLayers, annotationVisibility, ...
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Which source nodes were asked, which answered, which failed and why.
    sources: Mapped[dict[str, Any]] = mapped_column(JSON)
    # {"scope": "user"|"role"|"global"|null, "protocols": [...]} snapshot at issue time.
    hanging_protocols: Mapped[dict[str, Any]] = mapped_column(JSON)
    sticky: Mapped[str] = mapped_column(String(64), default="")
    client_address: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    redeemed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    studies: Mapped[list[ContextStudy]] = relationship(
        back_populates="context", order_by="ContextStudy.position"
    )


class ContextStudy(Base):
    """One study a context names, and how far it is from being viewable."""

    __tablename__ = "context_studies"
    __table_args__ = (Index("ix_context_studies_waiting", "study_uid",
                            sqlite_where=text(WAITING_FOR_RETRIEVAL),
                            postgresql_where=text(WAITING_FOR_RETRIEVAL)),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    context_pk: Mapped[int] = mapped_column(ForeignKey("viewing_contexts.id", ondelete="CASCADE"),
                                            index=True)
    position: Mapped[int] = mapped_column(Integer)
    study_uid: Mapped[str] = mapped_column(String(64))
    # "open", "history", "prior" (secondary monitor) or "preload" (named only by fullPreloadStudy).
    purpose: Mapped[str] = mapped_column(String(8))
    preload: Mapped[bool] = mapped_column(Boolean, default=False)
    # "available", "pending", "retrieving", "failed", "not-found".
    state: Mapped[str] = mapped_column(String(12))
    # AE title the study is retrieved from ("" when it was local or found nowhere).
    source: Mapped[str] = mapped_column(String(16), default="")
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    accession_number: Mapped[str] = mapped_column(String(64), default="")
    study_date: Mapped[str] = mapped_column(String(8), default="")
    description: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    # A retrieval's progress as its source reports it: instances received so far, and how many
    # the source announced (0: not yet known). Written while it runs, kept once it ended.
    instances_received: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    instances_announced: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    context: Mapped[ViewingContext] = relationship(back_populates="studies")


class ViewerSession(Base):
    """A redeemed token: the browser holds the cookie, the server holds this row."""

    __tablename__ = "viewer_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cookie_hash: Mapped[str] = mapped_column(String(64), unique=True)
    context_pk: Mapped[int] = mapped_column(ForeignKey("viewing_contexts.id", ondelete="CASCADE"),
                                            index=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    client_address: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditEvent(Base):
    """Who did what with which token, when and from where. The one place patient identifiers
    from a request are kept; logs never carry them."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # "issue", "redeem", "redeem-refused", "revoke", "revoke-sessions", "stow".
    action: Mapped[str] = mapped_column(String(16))
    username: Mapped[str] = mapped_column(String(64), default="")
    role: Mapped[str] = mapped_column(String(64), default="")
    context_pk: Mapped[int | None] = mapped_column(Integer, nullable=True)
    client_address: Mapped[str] = mapped_column(String(64), default="")
    # What was asked for or done: the request's study UIDs, accession, patient ID, the outcome.
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
