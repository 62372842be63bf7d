"""The index schema: patients, studies, series, instances, and the node's own records.

Each level carries the attributes C-FIND and the REST API answer with, so that a query never
opens a file. Person names are also kept upper-cased (`*_search`) because C-FIND matches them
case-insensitively and an index on the upper-cased column keeps that fast.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Patient(Base):
    """One patient: (PatientID, IssuerOfPatientID). Instances without a PatientID are never
    joined by that empty value: each of their studies is a patient of its own, told apart by
    `study_anchor` (that study's UID; empty for every patient that has a PatientID)."""

    __tablename__ = "patients"
    __table_args__ = (UniqueConstraint("patient_id", "issuer", "study_anchor",
                                       name="uq_patient_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    issuer: Mapped[str] = mapped_column(String(64), default="")
    study_anchor: Mapped[str] = mapped_column(String(64), default="", index=True)
    name: Mapped[str] = mapped_column(String(324), default="")
    name_search: Mapped[str] = mapped_column(String(324), default="", index=True)
    birth_date: Mapped[str] = mapped_column(String(8), default="")
    sex: Mapped[str] = mapped_column(String(16), default="")
    charset: Mapped[str] = mapped_column(String(128), default="")

    studies: Mapped[list[Study]] = relationship(back_populates="patient")


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_date: Mapped[str] = mapped_column(String(8), default="", index=True)
    study_time: Mapped[str] = mapped_column(String(16), default="")
    accession_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    study_id: Mapped[str] = mapped_column(String(16), default="")
    description: Mapped[str] = mapped_column(String(64), default="")
    referring_physician: Mapped[str] = mapped_column(String(324), default="")
    charset: Mapped[str] = mapped_column(String(128), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # What the study's instances take in the storage, kept by the index writer in the same
    # transactions as the instances (sums over studies, not over every instance).
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    instance_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When the study was last opened by a token, retrieved from the node or exported (None:
    # never); with updated_at (last stored) the order in which studies are recycled.
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    patient: Mapped[Patient] = relationship(back_populates="studies")
    series: Mapped[list[Series]] = relationship(back_populates="study")


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    series_uid: Mapped[str] = mapped_column(String(64), unique=True)
    modality: Mapped[str] = mapped_column(String(16), default="", index=True)
    series_number: Mapped[str] = mapped_column(String(12), default="")
    description: Mapped[str] = mapped_column(String(64), default="")
    body_part: Mapped[str] = mapped_column(String(64), default="")

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Instance(Base):
    __tablename__ = "instances"
    __table_args__ = (Index("ix_instances_container", "container_identifier"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    sop_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64), default="")
    instance_number: Mapped[str] = mapped_column(String(12), default="")
    number_of_frames: Mapped[int] = mapped_column(Integer, default=1)
    container_identifier: Mapped[str] = mapped_column(String(64), default="")
    # Path relative to the storage root.
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    transfer_syntax: Mapped[str] = mapped_column(String(64))
    charset: Mapped[str] = mapped_column(String(128), default="")
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Who sent it: "dicom:AE_TITLE", "import", "retrieve:AE_TITLE", "api".
    origin: Mapped[str] = mapped_column(String(80), default="")

    series: Mapped[Series] = relationship(back_populates="instances")


class Setting(Base):
    """Small values the node keeps for itself (schema version and the like)."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
