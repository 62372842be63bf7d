"""C-MOVE and C-GET SCP against DCMTK's movescu/getscu: the stored files go out as they are stored.

The data is one study (two CT series of three instances, uncompressed) plus a JPEG Baseline
secondary capture in the same study, stored once through storescu.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import JPEGBaseline8Bit

from tests.factory import StudySpec, uid, write_jpeg_instance, write_study
from tests.peers import NodeProcess, StoreSCP, dcmtk

STUDY = StudySpec(patient_id="MOVE-001", patient_name="QRMOVE^PAT", study_uid=uid(2101),
                  accession="MOVEACC1", series=2, instances_per_series=3)
JPEG_SERIES = STUDY.study_uid + ".90"
JPEG_SOP = STUDY.study_uid + ".90.1"



@pytest.fixture(scope="module")
def sent(node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dataset]:
    """The instances stored in the node for these tests, by SOP Instance UID."""
    folder = tmp_path_factory.mktemp("move-data")
    paths = write_study(folder, STUDY)
    write_jpeg_instance(folder / "jpeg.dcm", STUDY)
    paths.append(folder / "jpeg.dcm")
    # -xy: propose JPEG Baseline too, so the compressed file is stored as it is.
    result = dcmtk("storescu", "-xy", "-aec", node.ae_title, "+sd", "+r", "127.0.0.1",
                   str(node.dicom_port), str(folder))
    assert result.returncode == 0, result.stderr
    return {str(ds.SOPInstanceUID): ds for ds in map(dcmread, paths)}


def study_keys(level: str = "STUDY") -> list[str]:
    return [f"QueryRetrieveLevel={level}", f"StudyInstanceUID={STUDY.study_uid}"]


def run(tool: str, node: NodeProcess, *args: str, keys: list[str], succeed: bool = True) -> str:
    """Run movescu/getscu verbosely; returns its log (stdout and stderr)."""
    key_args = [arg for key in keys for arg in ("-k", key)]
    result = dcmtk(tool, "-v", "-aec", node.ae_title, *args, *key_args, "127.0.0.1",
                   str(node.dicom_port))
    log = result.stdout + result.stderr
    # DCMTK exits non-zero when the final response is a failure.
    assert (result.returncode == 0) == succeed, log
    return log


def movescu(node: NodeProcess, destination: str, keys: list[str], model: str = "-S",
            succeed: bool = True) -> str:
    return run("movescu", node, model, "-aem", destination, keys=keys, succeed=succeed)


def getscu(node: NodeProcess, folder: Path, keys: list[str], *options: str,
           ) -> tuple[list[Dataset], str]:
    """Run getscu; returns what it received and its log (it exits 0 even on a failure)."""
    folder.mkdir()
    log = run("getscu", node, "-S", "-od", str(folder), *options, keys=keys)
    return [dcmread(p) for p in sorted(folder.iterdir())], log


def sop_uids(datasets: list[Dataset]) -> list[str]:
    return sorted(str(ds.SOPInstanceUID) for ds in datasets)


def received(storescp: StoreSCP) -> list[Dataset]:
    return [dcmread(p) for p in storescp.received()]


def node_still_serves(node: NodeProcess) -> None:
    echo = dcmtk("echoscu", "-aec", node.ae_title, "127.0.0.1", str(node.dicom_port))
    assert echo.returncode == 0, echo.stderr


def test_movescu_delivers_exactly_the_studys_files(node: NodeProcess, storescp: StoreSCP,
                                                   sent: dict[str, Dataset]) -> None:
    storescp.clear()
    log = movescu(node, storescp.ae_title, study_keys())
    assert "Final Move Response (Success)" in log
    got = received(storescp)
    assert sop_uids(got) == sorted(sent)


def test_movescu_sends_a_jpeg_file_as_stored(node: NodeProcess, storescp: StoreSCP,
                                             sent: dict[str, Dataset]) -> None:
    storescp.clear()
    movescu(node, storescp.ae_title, [
        "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={STUDY.study_uid}",
        f"SeriesInstanceUID={JPEG_SERIES}", f"SOPInstanceUID={JPEG_SOP}",
    ])
    (got,) = received(storescp)
    assert got.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert got.PixelData == sent[JPEG_SOP].PixelData


@pytest.mark.parametrize(
    ("model", "keys", "expected"),
    [
        ("-P", ["QueryRetrieveLevel=PATIENT", f"PatientID={STUDY.patient_id}"], None),
        ("-S", ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={STUDY.study_uid}",
                f"SeriesInstanceUID={STUDY.study_uid}.2"], ".2."),
        ("-S", ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={STUDY.study_uid}",
                f"SeriesInstanceUID={STUDY.study_uid}.1",
                f"SOPInstanceUID={STUDY.study_uid}.1.3"], ".1.3"),
    ],
    ids=["patient", "series", "image"],
)
def test_movescu_at_each_level_sends_what_the_level_names(
    node: NodeProcess, storescp: StoreSCP, sent: dict[str, Dataset], model: str,
    keys: list[str], expected: str | None,
) -> None:
    storescp.clear()
    movescu(node, storescp.ae_title, keys, model=model)
    wanted = sorted(u for u in sent if expected is None or u.startswith(STUDY.study_uid + expected))
    assert wanted
    assert sop_uids(received(storescp)) == wanted


def test_movescu_to_an_unknown_destination_is_refused(node: NodeProcess, storescp: StoreSCP,
                                                      sent: dict[str, Dataset]) -> None:
    storescp.clear()
    log = movescu(node, "NOWHERE", study_keys(), succeed=False)
    assert "Move response with error status" in log
    assert "MoveDestinationUnknown" in log
    assert storescp.received() == []
    node_still_serves(node)


def test_movescu_for_an_unknown_study_moves_nothing(node: NodeProcess, storescp: StoreSCP,
                                                    sent: dict[str, Dataset]) -> None:
    storescp.clear()
    log = movescu(node, storescp.ae_title,
                  ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={uid(2199)}"])
    assert "Final Move Response (Success)" in log
    assert "Pending" not in log
    assert storescp.received() == []


def test_movescu_without_the_levels_unique_key_gets_a_failure(
    node: NodeProcess, storescp: StoreSCP, sent: dict[str, Dataset]
) -> None:
    storescp.clear()
    log = movescu(node, storescp.ae_title,
                  ["QueryRetrieveLevel=STUDY", f"PatientID={STUDY.patient_id}"], succeed=False)
    assert "Move response with error status (Error: DataSetDoesNotMatchSOPClass)" in log
    assert storescp.received() == []
    node_still_serves(node)


def test_getscu_retrieves_the_study(node: NodeProcess, sent: dict[str, Dataset],
                                    tmp_path: Path) -> None:
    got, _ = getscu(node, tmp_path / "get", study_keys())
    assert len(got) == len(sent)
    assert sop_uids(got) == sorted(sent)


def test_getscu_proposing_jpeg_gets_the_jpeg_file_as_stored_and_the_rest_too(
    node: NodeProcess, sent: dict[str, Dataset], tmp_path: Path
) -> None:
    # getscu +xy proposes JPEG Baseline first for every SOP class: the node must still pick an
    # uncompressed syntax for the CT files and JPEG for the secondary capture.
    datasets, _ = getscu(node, tmp_path / "get", study_keys(), "+xy")
    got = {str(ds.SOPInstanceUID): ds for ds in datasets}
    assert sorted(got) == sorted(sent)
    jpeg = got[JPEG_SOP]
    assert jpeg.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert jpeg.PixelData == sent[JPEG_SOP].PixelData
    ct = got[f"{STUDY.study_uid}.1.1"]
    assert not ct.file_meta.TransferSyntaxUID.is_compressed
    assert ct.PixelData == sent[f"{STUDY.study_uid}.1.1"].PixelData


def test_getscu_without_jpeg_gets_the_jpeg_file_decompressed(
    node: NodeProcess, sent: dict[str, Dataset], tmp_path: Path
) -> None:
    (got,), _ = getscu(node, tmp_path / "get", [
        "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={STUDY.study_uid}",
        f"SeriesInstanceUID={JPEG_SERIES}",
    ])
    assert str(got.SOPInstanceUID) == JPEG_SOP
    assert not got.file_meta.TransferSyntaxUID.is_compressed
    assert got.pixel_array.shape == (STUDY.rows, STUDY.columns)


def test_getscu_for_an_unknown_study_gets_nothing(node: NodeProcess, sent: dict[str, Dataset],
                                                  tmp_path: Path) -> None:
    got, log = getscu(node, tmp_path / "get",
                      ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={uid(2199)}"])
    assert "Received C-GET Response (Success)" in log
    assert "Number of Completed Suboperations : 0" in log
    assert got == []
    node_still_serves(node)


def test_getscu_without_the_levels_unique_key_gets_a_failure(
    node: NodeProcess, sent: dict[str, Dataset], tmp_path: Path
) -> None:
    got, log = getscu(node, tmp_path / "get",
                      ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={STUDY.study_uid}"])
    assert "Received C-GET Response (Error: DataSetDoesNotMatchSOPClass)" in log
    assert got == []
    node_still_serves(node)


SHARED_ID = StudySpec(patient_id="MOVE-SHARED", patient_name="QRMOVE^NOISSUER",
                      study_uid=uid(2102), instances_per_series=1)
SHARED_ID_OTHER_ISSUER = StudySpec(patient_id="MOVE-SHARED", issuer="HOSP-X",
                                   patient_name="QRMOVE^HOSPX", study_uid=uid(2103),
                                   instances_per_series=1)


def test_a_patient_level_move_names_one_patient_by_id_and_issuer(
    node: NodeProcess, storescp: StoreSCP, tmp_path: Path
) -> None:
    """MOVE-SHARED without issuer and MOVE-SHARED of HOSP-X are two patients: a move naming the
    ID alone is refused, one naming the issuer too moves that patient's images only."""
    for spec in (SHARED_ID, SHARED_ID_OTHER_ISSUER):
        folder = tmp_path / spec.study_uid
        write_study(folder, spec)
        result = dcmtk("storescu", "-aec", node.ae_title, "+sd", "+r", "127.0.0.1",
                       str(node.dicom_port), str(folder))
        assert result.returncode == 0, result.stderr
    storescp.clear()
    keys = ["QueryRetrieveLevel=PATIENT", "PatientID=MOVE-SHARED"]
    log = movescu(node, storescp.ae_title, keys, model="-P", succeed=False)
    assert "DataSetDoesNotMatchSOPClass" in log
    assert storescp.received() == []
    movescu(node, storescp.ae_title, [*keys, "IssuerOfPatientID=HOSP-X"], model="-P")
    assert {str(ds.StudyInstanceUID) for ds in received(storescp)} == {
        SHARED_ID_OTHER_ISSUER.study_uid}
