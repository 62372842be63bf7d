"""The ingest hot path's header scanner gives exactly the record pydicom gives, for every shape."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from node.errors import InvalidInput
from node.ingest.file_completeness import check_complete
from node.ingest.header_scan import HEAD_BYTES, _NotPlain, _Scanner, read_record_fast
from node.ingest.instance_record import read_record
from tests.factory import (
    StudySpec,
    make_instance,
    uid,
    write_jpeg_instance,
    write_multiframe_instance,
)

SPEC = StudySpec(study_uid=uid(700, 1), patient_name="DOE^JOHN", accession="A7")


def scanned_plainly(path: Path) -> bool:
    data = path.read_bytes()
    try:
        _Scanner(data[:HEAD_BYTES], len(data)).scan()
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
    """The fast path's store receiver hands over the bytes it wrote; the scan must not care."""
    path = save(make_instance(SPEC, 0, 4), tmp_path / "a.dcm")
    head = path.read_bytes()[:HEAD_BYTES]
    assert read_record_fast(path, head) == read_record_fast(path) == read_record(path)


def with_trailing_padding(ds: Dataset) -> Dataset:
    """Data Set Trailing Padding (FFFC,FFFC) after the pixel data: the data set goes on past
    its largest element."""
    ds.add_new(0xFFFCFFFC, "OB", b"\0" * 1000)
    return ds


def files_of_every_shape(folder: Path) -> list[Path]:
    big = StudySpec(study_uid=uid(700, 3), rows=256, columns=256)
    paths = [
        save(make_instance(SPEC, 0, 6), folder / "explicit.dcm"),
        save(with_sequences(make_instance(SPEC, 0, 7, transfer_syntax=ImplicitVRLittleEndian)),
             folder / "implicit-sequences.dcm"),
        save(with_trailing_padding(make_instance(big, 0, 0)), folder / "big-padded.dcm"),
    ]
    write_jpeg_instance(folder / "jpeg.dcm", SPEC)
    write_multiframe_instance(folder / "frames.dcm", SPEC, frames=12)
    return [*paths, folder / "jpeg.dcm", folder / "frames.dcm"]


def test_a_whole_file_is_scanned_to_its_end_and_past_the_head_from_the_file(
        tmp_path: Path) -> None:
    for path in files_of_every_shape(tmp_path):
        data = path.read_bytes()
        scanner = _Scanner(data[:HEAD_BYTES], len(data))
        scanner.scan()
        if path.name == "big-padded.dcm":
            # its pixel data ends past the head; the padding after it is the file walk's
            assert scanner.rest is not None and scanner.rest.offset == len(data) - 1012
        else:  # held whole, or ending with the element that runs past the head
            assert scanner.rest is None, path.name
        assert read_record_fast(path, data[:HEAD_BYTES], len(data)) == read_record(path)
    assert (tmp_path / "frames.dcm").stat().st_size > HEAD_BYTES


def test_every_cut_the_file_walk_refuses_is_refused(tmp_path: Path) -> None:
    """The scanner judges the bytes it holds and leaves the rest to check_complete or
    check_rest: wherever a file is cut, it is refused whenever the walk refuses it."""
    cut = tmp_path / "cut.dcm"
    for path in files_of_every_shape(tmp_path):
        data = path.read_bytes()
        size = len(data)
        ends = {*range(132, size, max(61, size // 200)), *range(size - 1040, size, 7),
                *range(size - 16, size)}
        for end in sorted(ends):
            cut.write_bytes(data[:end])
            try:
                check_complete(cut)
            except InvalidInput as exc:
                assert "truncated" in str(exc) or end < 200, (path.name, end, exc)
                with pytest.raises(InvalidInput):
                    read_record_fast(cut, data[:min(end, HEAD_BYTES)], end)
