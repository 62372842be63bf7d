"""Filling a missing IssuerOfPatientID into a Part 10 file by splicing its bytes
(node/ingest/issuer_fill.py): the rest of the file is copied as it was."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from node.ingest.header_scan import HEAD_BYTES
from node.ingest.issuer_fill import fill_file, find_issuer_gap, issuer_element, write_filled
from tests.factory import StudySpec, make_instance, uid

ISSUER = "HOSPITAL-A"


def part10(ds: Dataset) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def instance(syntax: str = ExplicitVRLittleEndian, rows: int = 8, **changes: str) -> Dataset:
    values = {"patient_id": "PID-FILL", **changes}
    spec = StudySpec(study_uid=uid(7300, 1), rows=rows, columns=rows, **values)
    return make_instance(spec, 0, 0, transfer_syntax=syntax)


def filled(data: bytes) -> bytes:
    gap = find_issuer_gap(BytesIO(data))
    assert gap is not None
    element = issuer_element(gap, ISSUER)
    assert element is not None
    out = BytesIO()
    write_filled(out, memoryview(data), gap, element)
    return out.getvalue()


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_the_issuer_is_spliced_in_and_everything_else_kept(syntax: str) -> None:
    original = instance(syntax)
    data = part10(original)
    result = pydicom.dcmread(BytesIO(filled(data)))
    assert result.IssuerOfPatientID == ISSUER
    assert result.file_meta.TransferSyntaxUID == syntax
    del result.IssuerOfPatientID
    assert result == pydicom.dcmread(BytesIO(data))
    assert result.PixelData == original.PixelData


def test_an_empty_issuer_element_is_replaced() -> None:
    ds = instance()
    ds.IssuerOfPatientID = ""
    result = pydicom.dcmread(BytesIO(filled(part10(ds))))
    assert result.IssuerOfPatientID == ISSUER
    assert [e.tag for e in result].count(0x00100021) == 1


def test_a_file_is_filled_into_a_new_file(tmp_path: Path) -> None:
    data = part10(instance(rows=256))  # 128 KiB of pixels
    source = tmp_path / "sent.dcm"
    source.write_bytes(data)
    with source.open("rb") as sent:
        gap = find_issuer_gap(sent)
    assert gap is not None and gap.patient_id == "PID-FILL"
    element = issuer_element(gap, ISSUER)
    assert element is not None

    def new_file() -> tuple[BinaryIO, Path]:
        path = tmp_path / "filled.dcm"
        return path.open("wb"), path

    result = fill_file(source, gap, element, new_file)
    assert not source.exists()
    written = result.read_bytes()
    assert written == data[:gap.start] + element + data[gap.end:]
    assert pydicom.dcmread(result).IssuerOfPatientID == ISSUER


def test_nothing_to_fill_when_the_file_names_an_issuer_or_no_patient() -> None:
    assert find_issuer_gap(BytesIO(part10(instance(issuer="OTHER")))) is None
    assert find_issuer_gap(BytesIO(part10(instance(patient_id="")))) is None
    assert find_issuer_gap(BytesIO(b"not dicom at all")) is None


def test_an_issuer_the_files_character_set_cannot_carry_is_not_filled() -> None:
    gap = find_issuer_gap(BytesIO(part10(instance())))
    assert gap is not None
    assert issuer_element(gap, "HÔPITAL-Ω") is None  # Latin-1 by default: no omega
    assert issuer_element(gap, "A\\B") is None


def test_a_header_past_the_first_64_kib_is_filled() -> None:
    """A SEG of a long series lists every source image in group 0008, before the patient
    module: the place of the issuer is found wherever it is."""
    ds = instance()
    ds.SourceImageSequence = [Dataset() for _ in range(1000)]
    for index, item in enumerate(ds.SourceImageSequence):
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = f"{ds.StudyInstanceUID}.1.{index + 1}"
    data = part10(ds)
    assert data.index(b"PID-FILL") > HEAD_BYTES
    result = pydicom.dcmread(BytesIO(filled(data)))
    assert result.IssuerOfPatientID == ISSUER
    assert len(result.SourceImageSequence) == 1000
