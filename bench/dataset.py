"""The generated data sets the benchmarks send: deterministic, cached under bench/out/data/.

A set is split into four part folders of whole studies, so that one storescu can send the
whole set over one association and four storescu processes can send one part each.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from tests.factory import StudySpec, make_instance, uid

OUT = Path(__file__).resolve().parent / "out"
DATA = OUT / "data"
PARTS = 4

# kind -> (rows/columns, modality, UID branch); the 16-bit CT slice is 512 KiB of pixels.
KINDS: dict[str, tuple[int, str, int]] = {
    "small": (64, "MR", 1),
    "ct": (512, "CT", 2),
}
INSTANCES_PER_STUDY = 100


@dataclass(frozen=True)
class StoreSet:
    kind: str
    root: Path
    parts: tuple[Path, ...]
    count: int

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*.dcm"))


def _study_sizes(count: int) -> list[int]:
    """Studies of about INSTANCES_PER_STUDY instances, a multiple of PARTS of them."""
    studies = max(PARTS, -(-count // INSTANCES_PER_STUDY))
    studies += -studies % PARTS
    return [count // studies + (1 if s < count % studies else 0) for s in range(studies)]


def store_set(kind: str, count: int, filler: bool = False) -> StoreSet:
    """The data set of `count` instances of `kind`, generated on first use. `filler`: another
    set of the same shape, other studies (bench.ingest's node at its storage quota)."""
    size, modality, branch = KINDS[kind]
    if filler:
        branch += 10
    root = DATA / f"{kind}{'-filler' if filler else ''}-{count}"
    parts = tuple(root / f"part{p}" for p in range(PARTS))
    if not root.is_dir():
        building = DATA / f".{root.name}.building"
        shutil.rmtree(building, ignore_errors=True)
        for study, n in enumerate(_study_sizes(count)):
            spec = StudySpec(
                patient_id=f"BENCH-{kind.upper()}-{study:04d}",
                patient_name=f"BENCH^{kind.upper()}{study:04d}",
                study_uid=uid(900, branch, study),
                accession=f"B{branch}{study:06d}",
                study_date=f"2024{1 + study % 12:02d}{1 + study % 28:02d}",
                modality=modality,
                rows=size,
                columns=size,
                instances_per_series=n,
            )
            folder = building / f"part{study % PARTS}" / f"study{study:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                ds = make_instance(spec, 0, i)
                ds.save_as(folder / f"{i:05d}.dcm", enforce_file_format=True)
        building.rename(root)
    return StoreSet(kind, root, parts, count)


def single_study(kind: str, count: int) -> StoreSet:
    """One study of `count` instances of `kind` (the C-MOVE benchmark's study)."""
    size, modality, branch = KINDS[kind]
    root = DATA / f"study-{kind}-{count}"
    if not root.is_dir():
        building = DATA / f".study-{kind}-{count}.building"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        spec = StudySpec(
            patient_id=f"BENCH-MOVE-{kind.upper()}",
            patient_name="BENCH^MOVE",
            study_uid=uid(901, branch, count),
            accession=f"M{branch}{count:06d}",
            modality=modality,
            rows=size,
            columns=size,
            instances_per_series=count,
        )
        for i in range(count):
            make_instance(spec, 0, i).save_as(building / f"{i:05d}.dcm", enforce_file_format=True)
        building.rename(root)
    return StoreSet(kind, root, (root,), count)


SURNAMES = (
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ",
    "MARTINEZ", "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR",
    "MOORE", "JACKSON", "MARTIN", "LEE", "PEREZ", "THOMPSON", "WHITE", "HARRIS", "SANCHEZ",
    "CLARK", "RAMIREZ", "LEWIS", "ROBINSON", "WALKER", "YOUNG", "ALLEN", "KING", "WRIGHT",
    "SCOTT", "TORRES", "NGUYEN", "HILL", "FLORES", "GREEN", "ADAMS", "NELSON", "BAKER", "HALL",
    "RIVERA", "CAMPBELL", "MITCHELL", "CARTER", "ROBERTS",
)
GIVEN_NAMES = (
    "JAMES", "MARY", "ROBERT", "PATRICIA", "JOHN", "JENNIFER", "MICHAEL", "LINDA", "DAVID",
    "ELIZABETH", "WILLIAM", "BARBARA", "RICHARD", "SUSAN", "JOSEPH", "JESSICA", "THOMAS", "SARAH",
    "CHARLES", "KAREN", "CHRISTOPHER", "LISA", "DANIEL", "NANCY", "MATTHEW", "BETTY", "ANTHONY",
    "MARGARET", "MARK", "SANDRA", "DONALD", "ASHLEY", "STEVEN", "KIMBERLY", "PAUL", "EMILY",
    "ANDREW", "DONNA", "JOSHUA", "MICHELLE",
)
QUERY_MODALITIES = ("CT", "MR", "CR", "US", "MG")
INSTANCES_PER_QUERY_STUDY = 10
STUDIES_PER_PATIENT = 5
FIRST_DAY = date(2015, 1, 1)
DAYS = 3650


def query_patient(index: int) -> tuple[str, str]:
    """(PatientID, PatientName) of the query set's patient `index`."""
    surname = SURNAMES[index % len(SURNAMES)]
    given = GIVEN_NAMES[(index // len(SURNAMES)) % len(GIVEN_NAMES)]
    return f"FP{index:06d}", f"{surname}^{given}"


def query_study_date(study: int) -> str:
    return (FIRST_DAY + timedelta(days=study * 7919 % DAYS)).strftime("%Y%m%d")


def query_set(count: int) -> StoreSet:
    """`count` tiny instances in studies of 10, five studies per patient, study dates spread
    over ten years: the C-FIND benchmark's data, in four parts like `store_set`."""
    root = DATA / f"query-{count}"
    parts = tuple(root / f"part{p}" for p in range(PARTS))
    if root.is_dir():
        return StoreSet("query", root, parts, count)
    building = DATA / f".query-{count}.building"
    shutil.rmtree(building, ignore_errors=True)
    base = Dataset()
    base.SOPClassUID = SecondaryCaptureImageStorage
    base.SamplesPerPixel = 1
    base.PhotometricInterpretation = "MONOCHROME2"
    base.Rows = base.Columns = 8
    base.BitsAllocated = 16
    base.BitsStored = 12
    base.HighBit = 11
    base.PixelRepresentation = 0
    base.PixelData = bytes(128)
    base.ReferringPhysicianName = "REF^DOC"
    base.StudyTime = "093000"
    studies = count // INSTANCES_PER_QUERY_STUDY
    for study in range(studies):
        patient_id, name = query_patient(study // STUDIES_PER_PATIENT)
        study_uid = uid(902, study)
        folder = building / f"part{study % PARTS}" / f"s{study:06d}"
        folder.mkdir(parents=True)
        ds = copy.copy(base)
        ds.PatientID = patient_id
        ds.PatientName = name
        ds.PatientBirthDate = f"19{50 + study % 50:02d}0101"
        ds.PatientSex = "MF"[study % 2]
        ds.StudyInstanceUID = study_uid
        ds.StudyDate = query_study_date(study)
        ds.AccessionNumber = f"FA{study:07d}"
        ds.StudyID = str(study % 1000)
        modality = QUERY_MODALITIES[study % len(QUERY_MODALITIES)]
        ds.StudyDescription = f"{modality} STUDY {study % 97}"
        ds.Modality = modality
        ds.SeriesInstanceUID = f"{study_uid}.1"
        ds.SeriesNumber = 1
        for i in range(INSTANCES_PER_QUERY_STUDY):
            ds.SOPInstanceUID = f"{study_uid}.1.{i + 1}"
            ds.InstanceNumber = i + 1
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta = meta
            ds.save_as(folder / f"{i:02d}.dcm", enforce_file_format=True)
    building.rename(root)
    return StoreSet("query", root, parts, count)
