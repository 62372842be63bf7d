"""What the node keeps and lets go of: files of deleted studies waiting to be removed, and
studies protected from recycling.

A study is deleted from the index in one transaction (node/index/deletion_queries.py): its instance
rows go and each of its files gets a `deletion_files` row under the key of the deletion's job
(node/retention/deletion.py), which removes the files in the background and these rows with
them, batch by batch, so that a deletion cut short by a crash goes on where it stopped.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from node.index.dicom_models import Base


class DeletionFile(Base):
    __tablename__ = "deletion_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The deletion job's key (jobs.key of kind "delete").
    job_key: Mapped[str] = mapped_column(String(128), index=True)
    sop_uid: Mapped[str] = mapped_column(String(64))
    # Path relative to the storage root, as the instance row had it.
    path: Mapped[str] = mapped_column(Text)


class ProtectedStudy(Base):
    """A study never recycled to make room (`python -m node protect`), stored or not yet."""

    __tablename__ = "protected_studies"

    study_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    protected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Who asked ("cli:<user>").
    protected_by: Mapped[str] = mapped_column(String(64), default="")
