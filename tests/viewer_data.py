"""Synthetic instances for the viewer's tests: a CT phantom stack, one file per photometric
interpretation, compressed and multi-frame files, a Structured Report and wrapped documents.

All pixels are computed, nothing comes from real patients; every file is written with pydicom
and read back by the node's own ingest path.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.uid import (
    ComprehensiveSRStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    SecondaryCaptureImageStorage,
    UltrasoundMultiFrameImageStorage,
)

from node.sources.non_dicom_wrapping import wrap
from tests.factory import StudySpec, make_instance
from tests.media_files import image_bytes, mp4_bytes, pdf_bytes


def _phantom(rows: int, columns: int, index: int, count: int) -> np.ndarray:
    """Stored values of a CT slice (intercept -1024): air, a body disc of soft tissue, a bone
    ring and a lesion whose size changes with the slice, so that every slice differs."""
    y, x = np.mgrid[0:rows, 0:columns]
    cy, cx = rows / 2, columns / 2
    radius = np.hypot(y - cy, x - cx)
    values = np.full((rows, columns), 0, dtype=np.int16)  # -1024 HU
    values[radius < rows * 0.42] = 1024 + 40
    values[(radius > rows * 0.30) & (radius < rows * 0.34)] = 1024 + 900
    size = 4 + 14 * np.sin(np.pi * (index + 1) / (count + 1))
    lesion = np.hypot(y - cy * 0.8, x - cx * 1.2) < size
    values[lesion] = 1024 + 120
    values += (x * 3 + index).astype(np.int16) % 7
    return values.astype(np.uint16)


def ct_instances(spec: StudySpec, count: int) -> list[Dataset]:
    datasets = []
    for index in range(count):
        ds = make_instance(spec, 0, index)
        ds.BitsStored, ds.HighBit = 12, 11
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.BodyPartExamined = "CHEST"
        ds.SeriesDescription = "AXIAL 5mm"
        ds.PixelData = _phantom(spec.rows, spec.columns, index, count).tobytes()
        datasets.append(ds)
    return datasets


def write_all(folder: Path, datasets: list[Dataset]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _renumber(ds: Dataset, series: int) -> Dataset:
    ds.SeriesInstanceUID = f"{ds.StudyInstanceUID}.{series}"
    ds.SOPInstanceUID = f"{ds.StudyInstanceUID}.{series}.1"
    ds.SeriesNumber = series
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _gradient_rgb(rows: int, columns: int) -> np.ndarray:
    y, x = np.mgrid[0:rows, 0:columns]
    return np.stack([(x * 255 // max(columns - 1, 1)), (y * 255 // max(rows - 1, 1)),
                     ((x + y) * 3) % 256], axis=-1).astype(np.uint8)


def photometric_instances(spec: StudySpec) -> dict[str, Dataset]:
    """One instance per case of the rendering checks, each in its own series."""
    rows, columns = spec.rows, spec.columns
    cases: dict[str, Dataset] = {}

    mono2 = _renumber(make_instance(spec, 0, 0), 10)
    mono2.RescaleIntercept, mono2.RescaleSlope = -1024, 2
    mono2.WindowCenter, mono2.WindowWidth = [300, 40], [1500, 400]
    cases["MONOCHROME2"] = mono2

    mono1 = _renumber(make_instance(spec, 0, 1), 11)
    mono1.PhotometricInterpretation = "MONOCHROME1"
    mono1.WindowCenter, mono1.WindowWidth = 2048, 4096
    cases["MONOCHROME1"] = mono1

    signed = _renumber(make_instance(spec, 0, 2), 12)
    signed.PixelRepresentation = 1
    arr = np.random.default_rng(5).integers(-2000, 2000, (rows, columns)).astype(np.int16)
    signed.PixelData = arr.tobytes()
    signed.VOILUTFunction = "SIGMOID"
    signed.WindowCenter, signed.WindowWidth = 0, 1000
    cases["signed-sigmoid"] = signed

    lut = _renumber(make_instance(spec, 0, 3), 13)
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [256, 0, 12])
    curve = np.rint(np.sqrt(np.arange(256) / 255.0) * 4095).astype("<u2")
    item.add_new("LUTData", "OW", curve.tobytes())
    lut.VOILUTSequence = [item]
    cases["VOI-LUT"] = lut

    rgb = _renumber(make_instance(spec, 0, 4), 14)
    rgb.SamplesPerPixel, rgb.PhotometricInterpretation, rgb.PlanarConfiguration = 3, "RGB", 0
    rgb.BitsAllocated, rgb.BitsStored, rgb.HighBit = 8, 8, 7
    rgb.PixelData = _gradient_rgb(rows, columns).tobytes()
    rgb.SOPClassUID = rgb.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    cases["RGB"] = rgb

    ybr = _renumber(make_instance(spec, 0, 5), 15)
    ybr.SamplesPerPixel, ybr.PhotometricInterpretation, ybr.PlanarConfiguration = (
        3, "YBR_FULL", 0)
    ybr.BitsAllocated, ybr.BitsStored, ybr.HighBit = 8, 8, 7
    ybr.PixelData = convert_color_space(_gradient_rgb(rows, columns), "RGB",
                                        "YBR_FULL").tobytes()
    ybr.SOPClassUID = ybr.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    cases["YBR_FULL"] = ybr

    palette = _renumber(make_instance(spec, 0, 6), 16)
    palette.PhotometricInterpretation = "PALETTE COLOR"
    palette.BitsAllocated, palette.BitsStored, palette.HighBit = 8, 8, 7
    palette.PixelData = (np.arange(rows * columns) % 256).astype(np.uint8).tobytes()
    ramp = np.arange(256, dtype=np.uint16)
    for colour, data in (("Red", ramp * 257), ("Green", (255 - ramp) * 257),
                         ("Blue", ((ramp * 7) % 256) * 257)):
        setattr(palette, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(palette, f"{colour}PaletteColorLookupTableData", data.astype("<u2").tobytes())
    palette.SOPClassUID = palette.file_meta.MediaStorageSOPClassUID = (
        SecondaryCaptureImageStorage)
    cases["PALETTE COLOR"] = palette

    jpeg = _renumber(make_instance(spec, 0, 7), 17)
    jpeg.BitsAllocated, jpeg.BitsStored, jpeg.HighBit = 8, 8, 7
    grey = (_gradient_rgb(rows, columns)[..., 0] // 2 + 40).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey, "L").save(buffer, format="JPEG", quality=95)
    jpeg.PixelData = encapsulate([buffer.getvalue()])
    jpeg["PixelData"].VR = "OB"
    jpeg.WindowCenter, jpeg.WindowWidth = 128, 256
    jpeg.LossyImageCompression = "01"
    jpeg.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    cases["JPEG"] = jpeg

    rle = _renumber(make_instance(spec, 0, 8), 18)
    rle.WindowCenter, rle.WindowWidth = 1000, 1200
    rle.compress(RLELossless, encoding_plugin="pydicom")
    cases["RLE"] = rle

    multi = _renumber(make_instance(spec, 0, 9, sop_class=UltrasoundMultiFrameImageStorage), 19)
    multi.Modality = "US"
    frames = np.stack([(np.arange(rows * columns).reshape(rows, columns) * (f + 1)) % 4096
                       for f in range(6)]).astype(np.uint16)
    multi.NumberOfFrames = 6
    multi.FrameIncrementPointer = 0x00181063
    multi.FrameTime = 40
    multi.PixelData = frames.tobytes()
    cases["multi-frame"] = multi
    return cases


def sr_instance(spec: StudySpec, doctor: str = "HOUSE^GREGORY") -> Dataset:
    ds = make_instance(spec, 0, 0, sop_class=ComprehensiveSRStorage)
    for keyword in ("SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns",
                    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                    "PixelData"):
        delattr(ds, keyword)
    _renumber(ds, 30)
    ds.Modality = "SR"
    ds.SeriesDescription = "Radiology report"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    ds.ConceptNameCodeSequence = [_code("18748-4", "LN", "Diagnostic imaging report")]
    findings = Dataset()
    findings.RelationshipType, findings.ValueType = "CONTAINS", "TEXT"
    findings.ConceptNameCodeSequence = [_code("121071", "DCM", "Finding")]
    findings.TextValue = "No focal lesion of the liver."
    size = Dataset()
    size.RelationshipType, size.ValueType = "CONTAINS", "NUM"
    size.ConceptNameCodeSequence = [_code("G-D7FE", "SRT", "Diameter")]
    measured = Dataset()
    measured.NumericValue = "12.5"
    measured.MeasurementUnitsCodeSequence = [_code("mm", "UCUM", "millimeter")]
    size.MeasuredValueSequence = [measured]
    observer = Dataset()
    observer.RelationshipType, observer.ValueType = "HAS OBS CONTEXT", "PNAME"
    observer.ConceptNameCodeSequence = [_code("121008", "DCM", "Person Observer Name")]
    observer.PersonName = doctor
    ds.ContentSequence = [observer, findings, size]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, scheme, meaning
    return code


def wrapped_file(folder: Path, kind: str, spec: StudySpec, series: int) -> Path:
    """A PNG, PDF or MP4 wrapped into DICOM by the POST API's own wrapper."""
    payload = {"png": lambda: image_bytes("PNG", (64, 48)), "pdf": pdf_bytes,
               "mp4": mp4_bytes}[kind]()
    values = {"StudyInstanceUID": spec.study_uid,
              "SeriesInstanceUID": f"{spec.study_uid}.{series}",
              "SOPInstanceUID": f"{spec.study_uid}.{series}.1",
              "PatientID": spec.patient_id, "PatientName": spec.patient_name,
              "SeriesNumber": str(series), "SeriesDescription": f"wrapped {kind}",
              "Modality": {"png": "OT", "pdf": "DOC", "mp4": "XC"}[kind]}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}-{series}.dcm"
    with path.open("wb") as out:
        wrap(kind, io.BytesIO(payload), out, values)
    return path
