"""Synthetic DICOM data for tests and benchmarks: deterministic, small, and of every shape we need.

Nothing here comes from real patients; names and identifiers are invented.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

ROOT = "1.2.826.0.1.3680043.10.1011."


def uid(*parts: int | str) -> str:
    """A deterministic UID under the test root."""
    return ROOT + ".".join(str(p) for p in parts)


@dataclass(frozen=True)
class StudySpec:
    patient_id: str = "PID001"
    patient_name: str = "DOE^JANE"
    study_uid: str = ""
    accession: str = "ACC001"
    study_date: str = "20240105"
    study_description: str = "CT CHEST"
    modality: str = "CT"
    series: int = 1
    instances_per_series: int = 2
    rows: int = 64
    columns: int = 64
    charset: str = ""
    birth_date: str = "19700101"
    sex: str = "F"
    issuer: str = ""


def make_instance(
    spec: StudySpec,
    series_index: int,
    instance_index: int,
    transfer_syntax: str = ExplicitVRLittleEndian,
    sop_class: str | None = None,
) -> Dataset:
    study_uid = spec.study_uid or generate_uid(prefix=ROOT)
    sop_class = sop_class or {"CT": CTImageStorage, "MR": MRImageStorage}.get(
        spec.modality, SecondaryCaptureImageStorage
    )
    ds = Dataset()
    if spec.charset:
        ds.SpecificCharacterSet = spec.charset
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = f"{study_uid}.{series_index + 1}.{instance_index + 1}"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = f"{study_uid}.{series_index + 1}"
    ds.PatientID = spec.patient_id
    if spec.issuer:
        ds.IssuerOfPatientID = spec.issuer
    ds.PatientName = spec.patient_name
    ds.PatientBirthDate = spec.birth_date
    ds.PatientSex = spec.sex
    ds.StudyDate = spec.study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = spec.accession
    ds.StudyID = "1"
    ds.StudyDescription = spec.study_description
    ds.ReferringPhysicianName = "REF^DOC"
    ds.Modality = spec.modality
    ds.SeriesNumber = series_index + 1
    ds.SeriesDescription = f"{spec.modality} series {series_index + 1}"
    ds.InstanceNumber = instance_index + 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    rng = np.random.default_rng(instance_index + 1000 * series_index)
    pixels = rng.integers(0, 4096, size=(spec.rows, spec.columns), dtype=np.uint16)
    ds.PixelData = pixels.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    if transfer_syntax == ImplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds


def write_study(folder: Path, spec: StudySpec) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(spec.series):
        for i in range(spec.instances_per_series):
            ds = make_instance(spec, s, i)
            path = folder / f"{ds.SOPInstanceUID}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def changed_copy(original: Path, target: Path, patient_name: str) -> Path:
    """The same instance (same SOP Instance UID) with another patient name."""
    changed = dcmread(original)
    changed.PatientName = patient_name
    changed.save_as(target)
    return target


def write_jpeg_instance(path: Path, spec: StudySpec) -> Dataset:
    """An 8-bit JPEG Baseline secondary capture (encoded with Pillow)."""
    ds = make_instance(spec, 0, 0, sop_class=SecondaryCaptureImageStorage)
    ds.SOPInstanceUID = spec.study_uid + ".90.1"
    ds.SeriesInstanceUID = spec.study_uid + ".90"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.Modality = "OT"
    pixels = (np.arange(spec.rows * spec.columns) % 256).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels.reshape(spec.rows, spec.columns)).save(buffer, format="JPEG")
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(path, enforce_file_format=True)
    return ds


def write_multiframe_instance(path: Path, spec: StudySpec, frames: int = 5) -> Dataset:
    ds = make_instance(spec, 0, 0, sop_class=UltrasoundMultiFrameImageStorage)
    ds.SOPInstanceUID = spec.study_uid + ".91.1"
    ds.SeriesInstanceUID = spec.study_uid + ".91"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "US"
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = 40
    pixels = np.zeros((frames, spec.rows, spec.columns), dtype=np.uint16)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds
