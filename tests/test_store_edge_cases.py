"""C-STORE edge cases: bad datasets get a failure status without ending the association,
duplicates keep what is stored, names in other character sets are indexed decoded, and every
transfer syntax is stored exactly as received. After each test the node still answers C-ECHO.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEGBaseline8Bit
from pynetdicom import AE, _config
from pynetdicom.association import Association

from tests.factory import (
    StudySpec,
    make_instance,
    uid,
    write_jpeg_instance,
    write_multiframe_instance,
    write_study,
)
from tests.index_db import rows
from tests.peers import NodeProcess, dcmtk

SUCCESS = 0x0000
WARNING_DUPLICATE = 0xB000
FAILURE_DATASET_MISMATCH = 0xA900


@pytest.fixture(autouse=True)
def node_keeps_serving(node: NodeProcess) -> Iterator[None]:
    yield
    echo = dcmtk("echoscu", "-aec", node.ae_title, "127.0.0.1", str(node.dicom_port))
    assert echo.returncode == 0, f"node stopped answering: {echo.stderr}"
    assert node.is_running()


@contextmanager
def ct_association(node: NodeProcess, *contexts: tuple[str, str]) -> Iterator[Association]:
    """CT in Explicit VR Little Endian, and `contexts` (SOP class, transfer syntax)."""
    ae = AE(ae_title="EDGETEST")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)
    assert assoc.is_established
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def index_row(node: NodeProcess, sop_uid: str) -> tuple[str, int, str, int] | None:
    """(path, size, transfer syntax, number of frames) of an indexed instance."""
    found = rows(node.data_dir, "SELECT path, size, transfer_syntax, number_of_frames "
                 "FROM instances WHERE sop_uid = :sop", sop=sop_uid)
    return None if not found else (found[0][0], found[0][1], found[0][2], found[0][3])


def stored_file(node: NodeProcess, sop_uid: str) -> Path:
    row = index_row(node, sop_uid)
    assert row is not None, f"{sop_uid} is not indexed"
    return node.data_dir / "storage" / row[0]


def patient_name(node: NodeProcess, patient_id: str) -> str:
    ((name,),) = rows(node.data_dir, "SELECT name FROM patients WHERE patient_id = :pid",
                      pid=patient_id)
    return str(name)


def test_dataset_without_sop_instance_uid_fails_and_association_goes_on(
    node: NodeProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = StudySpec(study_uid=uid(8100), patient_id="EDGE-NOSOP")
    bad = make_instance(spec, 0, 0)
    meta_sop_uid = bad.SOPInstanceUID
    del bad.SOPInstanceUID
    bad_path = tmp_path / "no-sop-instance-uid.dcm"
    bad.save_as(bad_path, enforce_file_format=True)
    # Sent from the file as is: the request and the file meta carry the UID, the dataset not.
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)

    with ct_association(node) as assoc:
        status = assoc.send_c_store(bad_path)
        assert status.Status == FAILURE_DATASET_MISMATCH
        assert "SOPInstanceUID" in str(status.get("ErrorComment", ""))
        assert assoc.is_established
        good = make_instance(spec, 0, 1)
        assert assoc.send_c_store(good).Status == SUCCESS

    assert index_row(node, meta_sop_uid) is None
    assert index_row(node, good.SOPInstanceUID) is not None


def test_duplicate_sop_instance_uid_warns_and_keeps_the_stored_file(node: NodeProcess) -> None:
    spec = StudySpec(study_uid=uid(8200), patient_id="EDGE-DUP")
    first = make_instance(spec, 0, 0)
    with ct_association(node) as assoc:
        assert assoc.send_c_store(first).Status == SUCCESS
        path = stored_file(node, first.SOPInstanceUID)
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        row_before = index_row(node, first.SOPInstanceUID)

        second = make_instance(spec, 0, 0)
        second.PixelData = bytes(len(second.PixelData))
        second.SeriesDescription = "a different description"
        status = assoc.send_c_store(second)
        assert status.Status == WARNING_DUPLICATE
        assert assoc.is_established

    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert index_row(node, first.SOPInstanceUID) == row_before
    assert dcmread(path).PixelData == first.PixelData


@pytest.mark.parametrize(
    ("case", "charset", "name"),
    [
        (1, "ISO_IR 100", "MÜLLER^JOSÉ"),
        (2, "ISO_IR 192", "ŠŤASTNÝ^ZOË=山田^太郎"),
        (3, "ISO 2022 IR 6\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    ],
)
def test_non_ascii_patient_name_is_indexed_decoded(
    node: NodeProcess, case: int, charset: str, name: str
) -> None:
    patient_id = f"EDGE-CS-{case}"
    spec = StudySpec(study_uid=uid(8300, case), patient_id=patient_id, patient_name=name,
                     charset=charset)
    ds: Dataset = make_instance(spec, 0, 0)
    with ct_association(node) as assoc:
        assert assoc.send_c_store(ds).Status == SUCCESS

    assert patient_name(node, patient_id) == name
    stored = dcmread(stored_file(node, ds.SOPInstanceUID))
    assert str(stored.PatientName) == name


def write_mixed_folder(folder: Path, first_study: int) -> list[Path]:
    """CT and MR (Explicit VR Little Endian), a JPEG Baseline instance and a multi-frame US."""
    sources = write_study(folder / "ct", StudySpec(study_uid=uid(first_study),
                                                   patient_id="EDGE-MIX"))
    sources += write_study(folder / "mr", StudySpec(study_uid=uid(first_study + 1),
                                                    patient_id="EDGE-MIX", modality="MR"))
    jpeg = folder / "jpeg.dcm"
    write_jpeg_instance(jpeg, StudySpec(study_uid=uid(first_study + 2), patient_id="EDGE-MIX"))
    multiframe = folder / "us.dcm"
    write_multiframe_instance(multiframe, StudySpec(study_uid=uid(first_study + 3),
                                                    patient_id="EDGE-MIX"))
    return [*sources, jpeg, multiframe]


def store_folder(node: NodeProcess, folder: Path) -> None:
    # -xy proposes JPEG Baseline beside the uncompressed syntaxes, so nothing is compressed.
    result = dcmtk("storescu", "-aec", node.ae_title, "-xy", "+sd", "+r", "127.0.0.1",
                   str(node.dicom_port), str(folder))
    assert result.returncode == 0, result.stderr


def test_mixed_modalities_keep_their_pixel_data(node: NodeProcess, tmp_path: Path) -> None:
    sources = write_mixed_folder(tmp_path / "mixed", 8400)
    store_folder(node, tmp_path / "mixed")

    for source in sources:
        sent = dcmread(source)
        stored = dcmread(stored_file(node, sent.SOPInstanceUID))
        assert stored.PixelData == sent.PixelData, source.name
        assert stored.Modality == sent.Modality
    jpeg, multiframe = dcmread(sources[-2]), dcmread(sources[-1])
    jpeg_row = index_row(node, jpeg.SOPInstanceUID)
    assert jpeg_row is not None and jpeg_row[2] == JPEGBaseline8Bit
    assert dcmread(stored_file(node, jpeg.SOPInstanceUID)).file_meta.TransferSyntaxUID == (
        JPEGBaseline8Bit)
    us_row = index_row(node, multiframe.SOPInstanceUID)
    assert us_row is not None and us_row[3] == 5


def test_uncompressed_instances_keep_their_transfer_syntax(
    node: NodeProcess, tmp_path: Path
) -> None:
    sources = write_mixed_folder(tmp_path / "mixed", 8500)
    store_folder(node, tmp_path / "mixed")

    for source in sources:
        sent = dcmread(source)
        stored = dcmread(stored_file(node, sent.SOPInstanceUID))
        assert stored.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID, source.name


def test_an_instance_naming_another_patients_study_or_series_is_refused(
        node: NodeProcess) -> None:
    """A study is one patient's: an instance of its StudyInstanceUID with another patient
    (another PatientID, or the same one of another issuer) would be shown under the first
    patient's name, so it is refused (0xA900, the reason in the comment, nothing kept); so is
    an instance naming a series the node holds under another study."""
    owner = StudySpec(study_uid=uid(8710), patient_id="EDGE-OWNER", patient_name="OWNER^FIRST")
    first = make_instance(owner, 0, 0)
    intruders = [
        make_instance(StudySpec(study_uid=owner.study_uid, patient_id="EDGE-INTRUDER",
                                patient_name="INTRUDER^OTHER"), 1, 0),
        make_instance(StudySpec(study_uid=owner.study_uid, patient_id="EDGE-OWNER",
                                issuer="ELSEWHERE", patient_name="OWNER^NAMESAKE"), 2, 0),
    ]
    moved = make_instance(StudySpec(study_uid=uid(8711), patient_id="EDGE-OWNER",
                                    patient_name="OWNER^FIRST"), 0, 1)
    moved.SeriesInstanceUID = first.SeriesInstanceUID
    with ct_association(node) as assoc:
        assert assoc.send_c_store(first).Status == SUCCESS
        for intruder in intruders:
            status = assoc.send_c_store(intruder)
            assert status.Status == FAILURE_DATASET_MISMATCH
            assert "another patient" in status.ErrorComment
            assert index_row(node, intruder.SOPInstanceUID) is None
        status = assoc.send_c_store(moved)
        assert status.Status == FAILURE_DATASET_MISMATCH
        assert "another study" in status.ErrorComment
        assert index_row(node, moved.SOPInstanceUID) is None
        # The study's own patient goes on storing into it.
        assert assoc.send_c_store(make_instance(owner, 0, 1)).Status == SUCCESS
    assert rows(node.data_dir, "SELECT count(*) FROM patients WHERE patient_id IN "
                "('EDGE-INTRUDER') OR issuer = 'ELSEWHERE'") == [(0,)]
    assert "INTRUDER" not in node.log_text() and "NAMESAKE" not in node.log_text()
