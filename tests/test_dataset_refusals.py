"""Data sets the node refuses whole: one that is cut short or runs past its own end, and one
whose Study, Series or SOP Instance UID is longer than 64 characters. Over C-STORE (pynetdicom
sending the file's data set bytes as they are) the request gets 0xA900, nothing is indexed or
left in incoming/, and the association goes on; `import` and the ingest path behind every
other door refuse the same files.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from contextlib import AbstractContextManager
from io import BytesIO
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
)
from pynetdicom import _config
from pynetdicom.association import Association
from pynetdicom.dsutils import encode

from node.config import load_config
from node.dimse.fastpath.file_meta import file_meta_bytes
from node.errors import InvalidInput
from node.process.runtime import open_services
from tests.factory import StudySpec, make_instance, uid, write_jpeg_instance
from tests.index_db import rows
from tests.peers import NodeProcess, dcmtk, incoming_files
from tests.test_store_edge_cases import ct_association

SUCCESS = 0x0000
REFUSED = (0xA900, 0xC000)
PIXEL_DATA = struct.pack("<HH", 0x7FE0, 0x0010)
SEQUENCE_DELIMITER = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


def part10(ds: Dataset) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def without_pixels(ds: Dataset) -> Dataset:
    for keyword in ("PixelData", "Rows", "Columns", "SamplesPerPixel",
                    "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit",
                    "PixelRepresentation"):
        delattr(ds, keyword)
    return ds


def open_sequence() -> bytes:
    """Content Sequence (0040,A730) of undefined length, one item, and no sequence delimiter."""
    code = struct.pack("<HH2sH", 0x0008, 0x0100, b"SH", 4) + b"CODE"
    item = (struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + code
            + struct.pack("<HHI", 0xFFFE, 0xE00D, 0))
    return struct.pack("<HH2s2xI", 0x0040, 0xA730, b"SQ", 0xFFFFFFFF) + item


def incomplete_file(case: str, folder: Path) -> tuple[Path, str]:
    """A Part 10 file whose data set is not whole, as a hostile sender holds it; and its SOP
    Instance UID."""
    number = CASES.index(case) + 1
    spec = StudySpec(study_uid=uid(16001, number), patient_id="ISSUE16-CUT")
    if case == "encapsulated pixel data without its delimiter":
        jpeg = folder / "whole-jpeg.dcm"
        ds = write_jpeg_instance(jpeg, spec)
        whole = jpeg.read_bytes()
        assert whole.endswith(SEQUENCE_DELIMITER)
        data = whole[:-len(SEQUENCE_DELIMITER)]
    elif case == "deflated data set cut inside, its deflate stream whole":
        ds = make_instance(spec, 0, 0, transfer_syntax=DeflatedExplicitVRLittleEndian)
        whole = part10(ds)
        # the data set starts after the file meta: (0002,0000) gives its length
        start = 144 + struct.unpack_from("<I", whole, 140)[0]
        deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        inflated = zlib.decompress(whole[start:], -zlib.MAX_WBITS)
        data = whole[:start] + deflate.compress(inflated[:-100]) + deflate.flush()
    elif case == "undefined-length sequence without its delimiter":
        ds = without_pixels(make_instance(spec, 0, 0))
        data = part10(ds) + open_sequence()
    else:
        ds = make_instance(spec, 0, 0)
        whole = part10(ds)
        pixels = whole.rfind(PIXEL_DATA)
        cut = {
            "cut inside the pixel data value": lambda: whole[:-100],
            "cut inside a header value": lambda: whole[:whole.find(b"MONOCHROME2") + 4],
            "cut inside the pixel data element header": lambda: whole[:pixels + 6],
            "pixel data length 0xFFFFFFF0": lambda: (whole[:pixels + 8]
                                                     + struct.pack("<I", 0xFFFFFFF0)
                                                     + whole[pixels + 12:]),
        }[case]
        data = cut()
    path = folder / f"case-{number}.dcm"
    path.write_bytes(data)
    return path, str(ds.SOPInstanceUID)


CASES = [
    "cut inside the pixel data value",
    "cut inside a header value",
    "cut inside the pixel data element header",
    "pixel data length 0xFFFFFFF0",
    "undefined-length sequence without its delimiter",
    "encapsulated pixel data without its delimiter",
    "deflated data set cut inside, its deflate stream whole",
]


@pytest.fixture
def raw_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    """pynetdicom sends a file's data set bytes as they are, without decoding them."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


def association(node: NodeProcess) -> AbstractContextManager[Association]:
    return ct_association(node, (CTImageStorage, DeflatedExplicitVRLittleEndian),
                          (SecondaryCaptureImageStorage, JPEGBaseline8Bit))


def is_indexed(node: NodeProcess, sop_uid: str) -> bool:
    return bool(rows(node.data_dir, "SELECT 1 FROM instances WHERE sop_uid = :sop", sop=sop_uid))


def assert_nothing_kept(node: NodeProcess, sop_uid: str) -> None:
    assert not is_indexed(node, sop_uid)
    assert not list((node.data_dir / "storage").rglob(f"{sop_uid}.dcm"))
    assert incoming_files(node.data_dir) == []


def assert_still_serving(node: NodeProcess) -> None:
    echo = dcmtk("echoscu", "-aec", node.ae_title, "127.0.0.1", str(node.dicom_port))
    assert echo.returncode == 0, f"node stopped answering: {echo.stderr}"


@pytest.mark.parametrize("case", CASES)
def test_an_incomplete_data_set_is_refused_over_c_store(
    node: NodeProcess, tmp_path: Path, raw_sending: None, case: str
) -> None:
    path, sop_uid = incomplete_file(case, tmp_path)
    good = make_instance(StudySpec(study_uid=uid(16002, CASES.index(case)),
                                   patient_id="ISSUE16-GOOD"), 0, 0)

    with association(node) as assoc:
        status = assoc.send_c_store(path)
        assert status.Status in REFUSED, f"0x{status.Status:04X}"
        assert "truncated" in str(status.get("ErrorComment", ""))
        assert assoc.is_established
        assert assoc.send_c_store(good).Status == SUCCESS

    assert_nothing_kept(node, sop_uid)
    assert is_indexed(node, str(good.SOPInstanceUID))
    assert_still_serving(node)


def test_import_refuses_every_incomplete_data_set(tmp_path: Path) -> None:
    folder = tmp_path / "cd"
    folder.mkdir()
    cases = [incomplete_file(case, folder) for case in CASES]
    (folder / "whole-jpeg.dcm").unlink()  # the JPEG case's source, not a case
    node = NodeProcess(tmp_path / "node")
    node.write_config()

    result = node.cli("import", str(folder))

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"imported 0, duplicates 0, rejected {len(CASES)}" in result.stdout
    for path, sop_uid in cases:
        assert f"{path}: truncated file" in result.stdout
        assert not is_indexed(node, sop_uid)
    assert incoming_files(node.data_dir) == []


def test_the_ingest_path_refuses_incomplete_data_sets_from_any_door(tmp_path: Path) -> None:
    """Retrieval, POST sources and the annotation store hand their files to the ingestor as
    C-STORE does: it checks them itself."""
    folder = tmp_path / "files"
    folder.mkdir()
    node = NodeProcess(tmp_path / "node")
    node.write_config()
    cases = [incomplete_file(case, folder) for case in CASES]

    async def ingest_all() -> list[str]:
        refusals = []
        async with open_services(load_config(node.config_path)) as services:
            for path, _ in cases:
                with pytest.raises(InvalidInput, match="truncated") as refused:
                    await services.ingestor.ingest_copy(path, origin="api:test")
                refusals.append(str(refused.value))
        return refusals

    assert len(asyncio.run(ingest_all())) == len(CASES)
    for _, sop_uid in cases:
        assert not is_indexed(node, sop_uid)
    assert incoming_files(node.data_dir) == []


# --- UIDs longer than 64 characters --------------------------------------------------------


def long_uid(number: int, last: int) -> str:
    """A UID of 66 characters whose first 64 are a valid UID of their own: cut to 64, two of
    them are one."""
    stem = uid(16003, number) + "."
    stem += "1" * (64 - len(stem))
    return f"{stem}.{last}"


def with_long_uid(keyword: str, number: int, last: int, folder: Path) -> Path:
    """An instance whose data set carries a 66-character `keyword`; the request (and the file
    meta it is sent from) names the instance by a valid UID, as pynetdicom requires."""
    spec = StudySpec(study_uid=uid(16004, number), patient_id="ISSUE16-UID")
    ds = make_instance(spec, 0, last)
    setattr(ds, keyword, long_uid(number, last))
    data_set = encode(ds, False, True)
    assert data_set is not None
    path = folder / f"{keyword}-{last}.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + file_meta_bytes(
        ds.SOPClassUID, uid(16005, number, last), ExplicitVRLittleEndian) + data_set)
    return path


@pytest.mark.filterwarnings("ignore:The value length:UserWarning")  # pydicom, on the 66
@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_a_uid_longer_than_64_characters_is_refused_not_cut(
    node: NodeProcess, tmp_path: Path, raw_sending: None, keyword: str
) -> None:
    number = ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"].index(keyword) + 1
    paths = [with_long_uid(keyword, number, last, tmp_path) for last in (1, 2)]

    with association(node) as assoc:
        for path in paths:
            status = assoc.send_c_store(path)
            assert status.Status == 0xA900, f"0x{status.Status:04X}"
            assert keyword in str(status.get("ErrorComment", ""))
        assert assoc.is_established

    cut = long_uid(number, 1)[:64]
    column = {"SOPInstanceUID": "sop_uid", "StudyInstanceUID": "study_uid",
              "SeriesInstanceUID": "series_uid"}[keyword]
    table = {"sop_uid": "instances", "study_uid": "studies", "series_uid": "series"}[column]
    found = rows(node.data_dir, f"SELECT {column} FROM {table} WHERE {column} LIKE :stem",
                 stem=f"{uid(16003, number)}.%")
    assert found == [], f"{cut} was indexed"
    assert incoming_files(node.data_dir) == []
    assert_still_serving(node)
