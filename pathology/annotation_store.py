"""Annotation layers in the database, and their way in and out as DICOM instances.

Export writes one Microscopy Bulk Simple Annotations instance per user through the node's one
ingest path, so the layers leave by C-MOVE, C-GET and media like any instance. Annotation
instances that arrive for a slide (from another node, a modality, an import) are read into
layers the next time the slide's layers are asked for; a layer already in the database wins.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import highdicom as hd
import pydicom
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from node.errors import InvalidInput
from node.index.slide_queries import slide_instances
from node.ingest.ingestor import Ingestor
from node.storage.folder_storage import Storage
from pathology.annotations import ANN_SOP_CLASS, Layer, Shape, build_instance, read_instance
from pathology.catalogue import Sessions, locate_slide
from pathology.pathology_models import AnnotationImport, AnnotationLayerRecord

log = logging.getLogger(__name__)


def _to_layer(row: AnnotationLayerRecord) -> Layer:
    shapes = tuple(
        Shape(item["type"], tuple((float(x), float(y)) for x, y in item["points"]))
        for item in row.shapes
    )
    return Layer(row.container_identifier, row.owner, row.name, shapes, row.updated_at)


async def list_layers(sessions: Sessions, container_identifier: str) -> list[Layer]:
    async with sessions() as session:
        rows = (await session.execute(
            select(AnnotationLayerRecord)
            .where(AnnotationLayerRecord.container_identifier == container_identifier)
            .order_by(AnnotationLayerRecord.owner, AnnotationLayerRecord.name)
        )).scalars().all()
    return [_to_layer(row) for row in rows]


async def save_layer(sessions: Sessions, layer: Layer, replace: bool = True) -> bool:
    """Create or (with `replace`) overwrite the owner's layer of that name; False when it
    existed and was kept."""
    now = datetime.now(UTC)
    shapes = [s.to_json() for s in layer.shapes]
    try:
        async with sessions() as session, session.begin():
            row = (await session.execute(
                select(AnnotationLayerRecord).where(
                    AnnotationLayerRecord.container_identifier == layer.container_identifier,
                    AnnotationLayerRecord.owner == layer.owner,
                    AnnotationLayerRecord.name == layer.name)
            )).scalar_one_or_none()
            if row is not None and not replace:
                return False
            if row is None:
                row = AnnotationLayerRecord(container_identifier=layer.container_identifier,
                                            owner=layer.owner, name=layer.name)
                session.add(row)
            row.shapes = shapes
            row.updated_at = now
    except IntegrityError:
        # Two saves of a new layer raced; the other one's insert stands, this one updates it.
        if not replace:
            return False
        return await save_layer(sessions, layer, replace)
    return True


async def delete_layer(sessions: Sessions, container_identifier: str, owner: str,
                       name: str) -> bool:
    async with sessions() as session, session.begin():
        result = await session.execute(delete(AnnotationLayerRecord).where(
            AnnotationLayerRecord.container_identifier == container_identifier,
            AnnotationLayerRecord.owner == owner,
            AnnotationLayerRecord.name == name))
    return bool(getattr(result, "rowcount", 0))


async def import_instances(sessions: Sessions, storage: Storage,
                           container_identifier: str) -> int:
    """Read the slide's annotation instances not read before into layers; the count read."""
    async with sessions() as session:
        found = await slide_instances(session, container_identifier, ANN_SOP_CLASS)
        done = set((await session.scalars(select(AnnotationImport.sop_uid).where(
            AnnotationImport.sop_uid.in_([r.sop_uid for r in found])))).all())
    rows = [(r.sop_uid, r.path) for r in found if r.sop_uid not in done]
    for sop_uid, path in rows:
        try:
            local = await storage.local_path_async(path)
            layers = await asyncio.to_thread(_read, local, container_identifier)
        except Exception as exc:
            # A malformed instance stays in storage as received; the slide's layers still load.
            log.warning("annotation instance %s not read: %s", sop_uid, exc)
            layers = []
        for layer in layers:
            await save_layer(sessions, layer, replace=False)
        await _mark_imported(sessions, sop_uid, container_identifier)
    return len(rows)


def _read(path: Path, container_identifier: str) -> list[Layer]:
    return read_instance(pydicom.dcmread(path), container_identifier)


async def _mark_imported(sessions: Sessions, sop_uid: str, container_identifier: str) -> None:
    async with sessions() as session, session.begin():
        if await session.get(AnnotationImport, sop_uid) is None:
            session.add(AnnotationImport(sop_uid=sop_uid,
                                         container_identifier=container_identifier,
                                         imported_at=datetime.now(UTC)))


async def export_layers(sessions: Sessions, storage: Storage, ingestor: Ingestor,
                        container_identifier: str, owners: list[str] | None = None) -> list[str]:
    """Write each owner's layers (all owners when None) as one annotation instance in a new
    series of the slide's study, through the ingest path; the new SOP Instance UIDs."""
    source = await locate_slide(sessions, storage, container_identifier)
    if source.kind != "dicom":
        raise InvalidInput(f"slide {container_identifier} is not DICOM: its layers have no "
                           "DICOM image to refer to and stay in the database")
    image = await asyncio.to_thread(_level_zero, list(source.paths))
    layers = await list_layers(sessions, container_identifier)
    by_owner: dict[str, list[Layer]] = {}
    for layer in layers:
        if owners is None or layer.owner in owners:
            by_owner.setdefault(layer.owner, []).append(layer)
    if not by_owner:
        raise InvalidInput(f"slide {container_identifier} has no layers to export")
    series_uid = hd.UID()
    written = []
    for number, (owner, owned) in enumerate(sorted(by_owner.items()), start=1):
        dataset = build_instance(image, owner, owned, series_uid, number)
        out, incoming = storage.new_incoming_file()
        with out:
            await asyncio.to_thread(dataset.save_as, out, enforce_file_format=True)
            storage.flush(out)
        result = await ingestor.ingest_incoming(incoming, "api")
        await _mark_imported(sessions, result.sop_uid, container_identifier)
        written.append(result.sop_uid)
    return written


def _level_zero(paths: list[Path]) -> pydicom.Dataset:
    """The header of the slide's full-resolution image, which annotations refer to."""
    best: pydicom.Dataset | None = None
    for path in paths:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        image_type = list(dataset.get("ImageType", []))
        if len(image_type) < 3 or image_type[2] != "VOLUME":
            continue
        if best is None or dataset.TotalPixelMatrixColumns > best.TotalPixelMatrixColumns:
            best = dataset
    if best is None:
        raise InvalidInput(f"{paths[0].name}: the slide has no VOLUME image to annotate")
    return best
