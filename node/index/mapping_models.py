"""The storage mapping table (the spec's NgvStorageMapping): where a caller's paths live here.

Paths in POST requests are the caller's (the host's); the node reads through the volume that
host folder is mounted as. A path outside every row is never read.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from node.index.dicom_models import Base


class StorageMappingRow(Base):
    __tablename__ = "ngv_storage_mappings"

    # Absolute, normalised, without a trailing slash ("/" only for the root itself).
    host_path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    container_path: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
