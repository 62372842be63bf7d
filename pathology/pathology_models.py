"""The pathology tables: slide files that are not DICOM, slide metadata, colour lookup tables,
annotation layers.

They live on the index's `Base` but are created by `ensure_schema` through pathology's own
migrations, called when the HTTP app starts: node/ never imports pathology/.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from node.index.dicom_models import Base
from node.index.migrate import upgrade

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class SlideFile(Base):
    """A non-DICOM slide (NDPI, MRXS, SVS, TIFF) known by its containerIdentifier."""

    __tablename__ = "pathology_slide_files"

    container_identifier: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Absolute, or relative to the storage root.
    path: Mapped[str] = mapped_column(Text)
    # openslide's vendor name, found when the file was registered.
    format: Mapped[str] = mapped_column(String(32))
    study_uid: Mapped[str] = mapped_column(String(64), default="")
    series_uid: Mapped[str] = mapped_column(String(64), default="")
    sop_uid: Mapped[str] = mapped_column(String(64), default="")
    accession_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SlideMetadataRecord(Base):
    """The specimen chain of one slide as one source told it: "dicom" (read from the series
    when first asked) or "json" (the POST API's instance fields). Read merged, JSON winning."""

    __tablename__ = "pathology_slide_metadata"

    container_identifier: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(8), primary_key=True)
    specimen_identifier: Mapped[str] = mapped_column(String(256), default="", index=True)
    specimen_alias: Mapped[str] = mapped_column(String(256), default="")
    specimen_procedure: Mapped[str] = mapped_column(String(256), default="")
    specimen_body_site: Mapped[str] = mapped_column(String(256), default="")
    block_identifier: Mapped[str] = mapped_column(String(256), default="", index=True)
    block_alias: Mapped[str] = mapped_column(String(256), default="")
    block_procedure: Mapped[str] = mapped_column(String(256), default="")
    slide_identifier: Mapped[str] = mapped_column(String(256), default="", index=True)
    slide_alias: Mapped[str] = mapped_column(String(256), default="")
    slide_stain_code: Mapped[str] = mapped_column(String(256), default="")
    # Series (DICOM) or file (JSON) the record was read for: re-read when that changes.
    origin: Mapped[str] = mapped_column(String(256), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SlideLut(Base):
    """The lab's .cube for one slide, kept as uploaded so that GET returns the same bytes."""

    __tablename__ = "pathology_slide_luts"

    container_identifier: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(256), default="")
    size: Mapped[int] = mapped_column(Integer)
    # SHA-256 of the bytes: part of every tile ETag drawn with it.
    digest: Mapped[str] = mapped_column(String(64))
    cube: Mapped[bytes] = mapped_column(LargeBinary)
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AnnotationLayerRecord(Base):
    """One user's named layer on one slide; shapes as the API's JSON."""

    __tablename__ = "pathology_annotation_layers"
    __table_args__ = (
        UniqueConstraint("container_identifier", "owner", "name", name="uq_layer_owner_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    container_identifier: Mapped[str] = mapped_column(String(64), index=True)
    owner: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    shapes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AnnotationImport(Base):
    """Annotation instances already read into layers (or written from them), so that each is
    read once."""

    __tablename__ = "pathology_annotation_imports"

    sop_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    container_identifier: Mapped[str] = mapped_column(String(64), index=True)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


TABLE_NAMES = (
    SlideFile.__tablename__,
    SlideMetadataRecord.__tablename__,
    SlideLut.__tablename__,
    AnnotationLayerRecord.__tablename__,
    AnnotationImport.__tablename__,
)


async def ensure_schema(engine: AsyncEngine) -> None:
    """Apply pathology's own migrations (pathology/migrations/, its own version table):
    idempotent, safe on every start of every instance."""
    await upgrade(engine, MIGRATIONS, "alembic_version_pathology")
