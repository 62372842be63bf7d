"""Shared set-up for the POST API's import tests: a mapped volume holding the spec's files,
node services on a temporary data folder, and index look-ups."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.uid import VLWholeSlideMicroscopyImageStorage
from sqlalchemy import select

from node.config import Config, config_from_dict
from node.index.dicom_models import Instance, Patient, Series, Study
from node.services import NodeServices
from node.sources import FetchPolicy, Importer, ImportProgress, parse_request, plan_import
from node.sources.storage_mapping import MappingTable, StorageMapping
from tests.factory import StudySpec, make_instance, uid, write_study
from tests.media_files import image_bytes, mp4_bytes, pdf_bytes

# The test servers (Orthanc's DICOMweb, the tests' own) listen on loopback, which a node refuses
# to fetch from unless its configuration lists it.
LOOPBACK_ALLOWED = {"allowed_hosts": ["127.0.0.1"]}


def node_config(base: Path, **sections: dict[str, Any]) -> Config:
    raw: dict[str, Any] = {"storage": {"fsync": False},
                           "sources": {"retry_backoff_seconds": 0.05, "fetch_timeout": 10.0,
                                       **LOOPBACK_ALLOWED}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(raw, base_dir=base)


def write_spec_files(volume: Path) -> None:
    """What the spec's "files" example names under /storage/images, in the mapped volume."""
    images = volume / "images"
    images.mkdir(parents=True, exist_ok=True)
    spec = StudySpec(study_uid=uid(400, 1), patient_id="FILE-PID", patient_name="FILE^NAME",
                     accession="FILE-ACC")
    make_instance(spec, 0, 0).save_as(images / "image-1.dcm", enforce_file_format=True)
    (images / "image-1.jpg").write_bytes(image_bytes("JPEG"))
    (images / "image-1.png").write_bytes(image_bytes("PNG"))
    (images / "image-1.bmp").write_bytes(image_bytes("BMP"))
    (images / "video-1.mp4").write_bytes(mp4_bytes())
    (images / "report-1.pdf").write_bytes(pdf_bytes())


def write_spec_folder(volume: Path) -> list[Path]:
    """/storage/studies/study1: two studies in sub-folders, and files that are not DICOM."""
    folder = volume / "studies" / "study1"
    paths = write_study(folder / "a", StudySpec(study_uid=uid(401, 1), patient_id="FOLDER-A",
                                                series=2, instances_per_series=2))
    paths += write_study(folder / "b" / "deeper", StudySpec(study_uid=uid(401, 2),
                                                            patient_id="FOLDER-B"))
    (folder / "README.TXT").write_text("not an image")
    (folder / "a" / "DICOMDIR.bak").write_bytes(b"\x00" * 200)
    return paths


def write_wsi_files(volume: Path, levels: int = 3) -> None:
    """/storage/dicom/C231606-1426-A-1-A.dcm and the other levels of its series beside it,
    plus an unrelated instance that must not come along."""
    folder = volume / "dicom"
    folder.mkdir(parents=True, exist_ok=True)
    spec = StudySpec(study_uid=uid(402, 1), patient_id="WSI-FILE", modality="SM")
    for level in range(levels):
        ds = make_instance(spec, 0, level, sop_class=VLWholeSlideMicroscopyImageStorage)
        ds.ContainerIdentifier = "FROM-FILE"
        name = "C231606-1426-A-1-A.dcm" if level == 0 else f"level-{level}.dcm"
        ds.save_as(folder / name, enforce_file_format=True)
    other = make_instance(StudySpec(study_uid=uid(402, 2)), 0, 0)
    other.save_as(folder / "unrelated.dcm", enforce_file_format=True)


def storage_table(volume: Path) -> MappingTable:
    return MappingTable([StorageMapping("/storage", str(volume))])


async def run_body(services: NodeServices, body: dict[str, Any], mappings: MappingTable
                   ) -> ImportProgress:
    plan = plan_import(parse_request(body), mappings, services.config)
    progress = ImportProgress()
    await Importer(services, FetchPolicy.from_config(services.config)).run(
        plan.sources, progress)
    return progress


@dataclass(frozen=True)
class Indexed:
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    study_uid: str
    accession: str
    study_date: str
    study_description: str
    series_uid: str
    modality: str
    series_description: str
    sop_uid: str
    sop_class_uid: str
    container_identifier: str
    path: str


async def indexed(services: NodeServices) -> dict[str, Indexed]:
    """Every indexed instance, by SOP Instance UID."""
    async with services.sessions() as session:
        rows = (await session.execute(
            select(Patient, Study, Series, Instance)
            .join(Study, Study.patient_pk == Patient.id)
            .join(Series, Series.study_pk == Study.id)
            .join(Instance, Instance.series_pk == Series.id))).all()
    return {
        i.sop_uid: Indexed(p.patient_id, p.name, p.birth_date, p.sex, st.study_uid,
                           st.accession_number, st.study_date, st.description, se.series_uid,
                           se.modality, se.description, i.sop_uid, i.sop_class_uid,
                           i.container_identifier, i.path)
        for p, st, se, i in rows
    }
