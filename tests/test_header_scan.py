"""The ingest hot path's header scanner gives exactly the record pydicom gives, for every shape."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from node.errors import InvalidInput
from node.header_scan import HEAD_BYTES, _NotPlain, _Scanner, read_record_fast
from node.instance_record import read_record
from tests.factory import (
    StudySpec,
    make_instance,
    uid,
    write_jpeg_instance,
    write_multiframe_instance,
)

SPEC = StudySpec(study_uid=uid(700, 1), patient_name="DOE^JOHN", accession="A7")


def scanned_plainly(path: Path) -> bool:
    data = path.read_bytes()[:65536]
    try:
        _Scanner(data, complete=len(data) < 65536).scan()
    except _NotPlain:
        return False
    return True


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def with_sequences(ds: Dataset) -> Dataset:
    """Undefined-length sequences, nested, before the last element the index needs."""
    inner = Dataset()
    inner.CodeValue = "X1"
    item = Dataset()
    item.CodeValue = "P1"
    item.ConceptNameCodeSequence = Sequence([inner])
    ds.ProcedureCodeSequence = Sequence([item, Dataset()])
    ds.ContainerIdentifier = "SLIDE-7"
    return ds


@pytest.mark.parametrize("variant", ["explicit", "implicit", "sequences", "implicit-sequences"])
def test_plain_headers_are_scanned_and_match_pydicom(tmp_path: Path, variant: str) -> None:
    syntax = ImplicitVRLittleEndian if variant.startswith("implicit") else ExplicitVRLittleEndian
    ds = make_instance(SPEC, 0, 3, transfer_syntax=syntax)
    if variant.endswith("sequences"):
        ds = with_sequences(ds)
    path = save(ds, tmp_path / "a.dcm")
    assert scanned_plainly(path)
    assert read_record_fast(path) == read_record(path)


def test_jpeg_and_multiframe_match_pydicom(tmp_path: Path) -> None:
    jpeg = tmp_path / "jpeg.dcm"
    write_jpeg_instance(jpeg, SPEC)
    frames = tmp_path / "frames.dcm"
    write_multiframe_instance(frames, SPEC, frames=4)
    for path in (jpeg, frames):
        assert scanned_plainly(path)
        assert read_record_fast(path) == read_record(path)
    assert read_record_fast(frames).number_of_frames == 4


def test_non_ascii_names_go_to_pydicom(tmp_path: Path) -> None:
    spec = StudySpec(study_uid=uid(700, 2), patient_name="Müller^Jürgen", charset="ISO_IR 192")
    path = save(make_instance(spec, 0, 0), tmp_path / "utf8.dcm")
    assert not scanned_plainly(path)
    assert read_record_fast(path).patient_name == "Müller^Jürgen"


def test_multi_valued_and_big_endian_go_to_pydicom(tmp_path: Path) -> None:
    ds = make_instance(SPEC, 0, 1)
    ds.ReferringPhysicianName = ["A^B", "C^D"]
    multi = save(ds, tmp_path / "multi.dcm")
    assert not scanned_plainly(multi)
    assert read_record_fast(multi) == read_record(multi)
    big = make_instance(SPEC, 0, 2, transfer_syntax=ExplicitVRBigEndian)
    big_path = tmp_path / "big.dcm"
    big.save_as(big_path, implicit_vr=False, little_endian=False, enforce_file_format=True)
    assert not scanned_plainly(big_path)
    assert read_record_fast(big_path) == read_record(big_path)


def test_missing_uid_is_refused_like_pydicom(tmp_path: Path) -> None:
    ds = make_instance(SPEC, 0, 4)
    del ds.SeriesInstanceUID
    path = save(ds, tmp_path / "no-series.dcm")
    with pytest.raises(InvalidInput, match="SeriesInstanceUID"):
        read_record_fast(path)


def test_truncated_and_foreign_files_are_refused(tmp_path: Path) -> None:
    whole = save(make_instance(SPEC, 0, 5), tmp_path / "whole.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(whole[:300])
    assert not scanned_plainly(cut)
    text = tmp_path / "notes.txt"
    text.write_text("not DICOM at all")
    with pytest.raises(InvalidInput):
        read_record_fast(text)


def test_a_head_already_read_gives_the_same_record(tmp_path: Path) -> None:
    """node/dimse/store_receive.py hands over the bytes it wrote; the scan must not care."""
    path = save(make_instance(SPEC, 0, 4), tmp_path / "a.dcm")
    head = path.read_bytes()[:HEAD_BYTES]
    assert read_record_fast(path, head) == read_record_fast(path) == read_record(path)
