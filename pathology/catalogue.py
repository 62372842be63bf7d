"""Which files make up the slide with a given containerIdentifier, and what is known about it.

DICOM WSI slides are in the index already (Instance.container_identifier); other slides are
registered here by `register_slide_file`, which the POST API calls for NDPI, MRXS, SVS and TIFF
files. Slide metadata is read from the DICOM series the first time it is asked for and kept,
beside what the POST API's JSON said; the two are merged on read, JSON winning.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pydicom
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node.errors import Conflict, InvalidInput, NotFound
from node.index.slide_queries import (
    has_slide_instance,
    slide_container_studies,
    slide_containers_of_case,
    slide_containers_of_studies,
    slide_instances,
)
from node.storage.folder_storage import Storage
from pathology.dicom_slide_metadata import SlideMetadata, from_dicom
from pathology.pathology_models import SlideFile, SlideMetadataRecord
from pathology.slide import SlideInfo
from pathology.slide_opening import open_slide

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
MAX_IDENTIFIER = 64
Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class SlideSource:
    container_identifier: str
    kind: Literal["dicom", "file"]
    paths: tuple[Path, ...]
    # Changes whenever the files behind the slide change: part of every ETag.
    version: str


def check_container_identifier(value: str | None) -> str:
    if value is None or not value.strip():
        raise InvalidInput("containerIdentifier is mandatory", field="containerIdentifier")
    value = value.strip()
    if len(value) > MAX_IDENTIFIER or any(not c.isprintable() for c in value):
        raise InvalidInput(
            f"containerIdentifier must be at most {MAX_IDENTIFIER} printable characters",
            field="containerIdentifier")
    return value


async def locate_slide(
    sessions: Sessions, storage: Storage, container_identifier: str
) -> SlideSource:
    """The files of the slide: its DICOM WSI series if the index has one (the most recently
    received, should a slide have been scanned twice), else its registered file."""
    async with sessions() as session:
        rows = await slide_instances(session, container_identifier, WSI_SOP_CLASS)
        file_row = None if rows else await session.get(SlideFile, container_identifier)
    if rows:
        latest = max(rows, key=lambda r: r.received_at).series_uid
        series = sorted((r for r in rows if r.series_uid == latest), key=lambda r: r.sop_uid)
        identity = "|".join(f"{r.sop_uid}:{r.size}" for r in series)
        return SlideSource(
            container_identifier, "dicom",
            tuple(await storage.local_paths_async([r.path for r in series])),
            hashlib.sha256(f"{latest}|{identity}".encode()).hexdigest()[:24],
        )
    if file_row is not None:
        path = await _absolute(storage, file_row.path)
        try:
            stat = path.stat()
            stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        return SlideSource(
            container_identifier, "file", (path,),
            hashlib.sha256(f"{path}|{stamp}".encode()).hexdigest()[:24],
        )
    raise NotFound(f"no slide with containerIdentifier {container_identifier}")


async def slide_exists(sessions: Sessions, container_identifier: str) -> bool:
    """Whether `locate_slide` would find the slide, without resolving (or, from a bucket,
    downloading) its files."""
    async with sessions() as session:
        dicom = await has_slide_instance(session, container_identifier, WSI_SOP_CLASS)
        return dicom or await session.get(SlideFile, container_identifier) is not None


async def _absolute(storage: Storage, path: str) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else await storage.local_path_async(path)


async def register_slide_file(
    sessions: Sessions,
    storage: Storage,
    container_identifier: str,
    path: str | Path,
    *,
    metadata: SlideMetadata | Mapping[str, Any] | None = None,
    study_uid: str = "",
    series_uid: str = "",
    sop_uid: str = "",
    accession_number: str = "",
    replace: bool = False,
) -> SlideInfo:
    """Make a non-DICOM slide file servable under `container_identifier`.

    The file is opened first, by content, so a file no reader accepts is refused here
    (InvalidInput naming it) and never reaches a viewer. Registering the same file again
    updates its record; another file under a registered identifier is a Conflict unless
    `replace`. `metadata` is the POST API's instance JSON (or a SlideMetadata)."""
    container_identifier = check_container_identifier(container_identifier)
    absolute = await _absolute(storage, str(path))
    slide = await asyncio.to_thread(open_slide, [absolute])
    try:
        info = slide.info
    finally:
        slide.close()
    if info.format == "dicom":
        raise InvalidInput(f"{absolute.name}: DICOM slides enter through ingest, not as files")
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        row = await session.get(SlideFile, container_identifier)
        if row is not None and row.path != str(path) and not replace:
            raise Conflict(f"containerIdentifier {container_identifier} is already registered "
                           "for another file")
        if row is None:
            row = SlideFile(container_identifier=container_identifier)
            session.add(row)
        row.path = str(path)
        row.format = info.format
        row.study_uid = study_uid
        row.series_uid = series_uid
        row.sop_uid = sop_uid
        row.accession_number = accession_number
        row.registered_at = now
        if metadata is not None:
            await _store_metadata(session, container_identifier, "json", _as_metadata(metadata),
                                  str(path), now)
    return info


async def record_slide_metadata(
    sessions: Sessions, container_identifier: str, metadata: SlideMetadata | Mapping[str, Any]
) -> None:
    """Keep what the POST API's JSON says about a slide (a DICOM one too): it wins over what
    the DICOM series says, field by field."""
    container_identifier = check_container_identifier(container_identifier)
    async with sessions() as session, session.begin():
        await _store_metadata(session, container_identifier, "json", _as_metadata(metadata),
                              "", datetime.now(UTC))


def _as_metadata(metadata: SlideMetadata | Mapping[str, Any]) -> SlideMetadata:
    return metadata if isinstance(metadata, SlideMetadata) else SlideMetadata.from_json(metadata)


_METADATA_FIELDS = [f.name for f in fields(SlideMetadata) if f.name != "container_identifier"]


async def _store_metadata(session: AsyncSession, container_identifier: str, source: str,
                          metadata: SlideMetadata, origin: str, now: datetime) -> None:
    row = await session.get(SlideMetadataRecord, (container_identifier, source))
    if row is None:
        row = SlideMetadataRecord(container_identifier=container_identifier, source=source)
        session.add(row)
    for name in _METADATA_FIELDS:
        setattr(row, name, getattr(metadata, name))
    row.origin = origin
    row.updated_at = now


def _from_record(row: SlideMetadataRecord | None) -> SlideMetadata:
    if row is None:
        return SlideMetadata()
    return SlideMetadata(
        container_identifier=row.container_identifier,
        **{name: getattr(row, name) for name in _METADATA_FIELDS},
    )


async def slide_metadata(sessions: Sessions, storage: Storage,
                         container_identifier: str) -> SlideMetadata:
    """Everything known about the slide, DICOM and JSON merged; NotFound when neither the
    index, the registered files nor the JSON records know it."""
    container_identifier = check_container_identifier(container_identifier)
    async with sessions() as session:
        json_row = await session.get(SlideMetadataRecord, (container_identifier, "json"))
        dicom_row = await session.get(SlideMetadataRecord, (container_identifier, "dicom"))
    try:
        source: SlideSource | None = await locate_slide(sessions, storage, container_identifier)
    except NotFound:
        if json_row is None:
            raise
        source = None
    dicom = _from_record(dicom_row)
    if source is not None and source.kind == "dicom" and (
        dicom_row is None or dicom_row.origin != source.version
    ):
        dicom = await asyncio.to_thread(_read_dicom_metadata, source.paths[0])
        async with sessions() as session, session.begin():
            await _store_metadata(session, container_identifier, "dicom", dicom,
                                  source.version, datetime.now(UTC))
    merged = dicom.overridden_by(_from_record(json_row))
    return dataclasses.replace(merged, container_identifier=container_identifier)


def _read_dicom_metadata(path: Path) -> SlideMetadata:
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise InvalidInput(f"{path.name}: unreadable DICOM header ({exc})") from exc
    return from_dicom(dataset)


async def slides_of_case(sessions: Sessions, accession_number: str) -> list[str]:
    """The containerIdentifiers of a case's slides, DICOM and registered files, sorted."""
    async with sessions() as session:
        dicom = await slide_containers_of_case(session, accession_number, WSI_SOP_CLASS)
        files = (await session.execute(
            select(SlideFile.container_identifier)
            .where(SlideFile.accession_number == accession_number)
        )).scalars().all()
    return sorted(set(dicom) | set(files))


async def slides_of_studies(sessions: Sessions, study_uids: list[str]) -> list[str]:
    """The containerIdentifiers of the slides that belong to these studies, DICOM and
    registered files, sorted: what a POST request's session may read, its slides being known
    by the studies its JSON named rather than by an accession number it may not carry."""
    if not study_uids:
        return []
    async with sessions() as session:
        dicom = await slide_containers_of_studies(session, study_uids, WSI_SOP_CLASS)
        files = (await session.execute(
            select(SlideFile.container_identifier)
            .where(SlideFile.study_uid.in_(study_uids))
        )).scalars().all()
    return sorted(set(dicom) | set(files))


async def studies_of_slides(sessions: Sessions, container_identifiers: list[str]
                            ) -> dict[str, set[str]]:
    """The studies each of these slides belongs to, DICOM and registered files (a file
    registered without a study belongs to none)."""
    found: dict[str, set[str]] = {}
    if not container_identifiers:
        return found
    async with sessions() as session:
        dicom = await slide_container_studies(session, container_identifiers, WSI_SOP_CLASS)
        files = (await session.execute(
            select(SlideFile.container_identifier, SlideFile.study_uid)
            .where(SlideFile.container_identifier.in_(container_identifiers),
                   SlideFile.study_uid != ""))).all()
    for cid, uid in [*dicom, *files]:
        found.setdefault(cid, set()).add(uid)
    return found


async def studies_with_slide_files(session: AsyncSession, study_uids: list[str]) -> set[str]:
    """Which of these studies have a registered (non-DICOM) slide file: the index knows no
    patient for them, only the POST request's JSON does."""
    if not study_uids:
        return set()
    rows = await session.execute(
        select(SlideFile.study_uid).distinct().where(SlideFile.study_uid.in_(study_uids)))
    return set(rows.scalars().all())
