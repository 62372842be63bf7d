"""A patient is (PatientID, IssuerOfPatientID) over DICOM too, against DCMTK's findscu, movescu
and getscu: one PatientID held by patients of three issuers (none among them) is three
patients in every answer, and studies without PatientID are patients of their own.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.factory import StudySpec, uid, write_study
from tests.peers import NodeProcess, StoreSCP, dcmtk

SHARED = "QRID-SHARED"
HOME = StudySpec(patient_id=SHARED, patient_name="QRID^HOME", study_uid=uid(12001),
                 instances_per_series=1)
HOSP_X = StudySpec(patient_id=SHARED, issuer="QRID-HOSP-X", patient_name="QRID^XAVIER",
                   study_uid=uid(12002), instances_per_series=1)
HOSP_Y = StudySpec(patient_id=SHARED, issuer="QRID-HOSP-Y", patient_name="QRID^YVONNE",
                   study_uid=uid(12003), instances_per_series=1)
WITHOUT_ID = [StudySpec(patient_id="", patient_name=f"QRIDNOID^{n}", study_uid=uid(12010 + i),
                        instances_per_series=1) for i, n in enumerate(("ONE", "TWO"))]

_counter = itertools.count()


@pytest.fixture(scope="module")
def stored(node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> NodeProcess:
    folder = tmp_path_factory.mktemp("identity-dimse")
    for spec in (HOME, HOSP_X, HOSP_Y, *WITHOUT_ID):
        write_study(folder / spec.study_uid, spec)
    result = dcmtk("storescu", "-aec", node.ae_title, "+sd", "+r", "127.0.0.1",
                   str(node.dicom_port), str(folder))
    assert result.returncode == 0, result.stderr
    return node


def findscu(node: NodeProcess, tmp_path: Path, model: str, *keys: str) -> list[Dataset]:
    out = tmp_path / f"responses-{next(_counter)}"
    out.mkdir()
    args = [model, "-aec", node.ae_title, "-X", "-od", str(out)]
    for key in keys:
        args += ["-k", key]
    result = dcmtk("findscu", *args, "127.0.0.1", str(node.dicom_port))
    assert result.returncode == 0, result.stderr
    return [dcmread(p) for p in sorted(out.iterdir())]


def patients(responses: list[Dataset]) -> list[tuple[str, str, str]]:
    """(PatientID, IssuerOfPatientID, PatientName) of each response, sorted."""
    return sorted((str(ds.get("PatientID", "")), str(ds.get("IssuerOfPatientID", "")),
                   str(ds.get("PatientName", ""))) for ds in responses)


def retrieve(tool: str, node: NodeProcess, keys: list[str], *args: str) -> str:
    key_args = [arg for key in keys for arg in ("-k", key)]
    result = dcmtk(tool, "-v", "-P", "-aec", node.ae_title, *args, *key_args, "127.0.0.1",
                   str(node.dicom_port))
    return result.stdout + result.stderr


def studies_in(paths: list[Path]) -> set[str]:
    return {str(dcmread(p).StudyInstanceUID) for p in paths}


def test_a_patient_level_find_answers_each_issuer_as_a_patient(stored: NodeProcess,
                                                              tmp_path: Path) -> None:
    found = findscu(stored, tmp_path, "-P", "QueryRetrieveLevel=PATIENT", f"PatientID={SHARED}",
                    "IssuerOfPatientID", "PatientName", "NumberOfPatientRelatedStudies")
    assert patients(found) == [(SHARED, "", "QRID^HOME"),
                               (SHARED, "QRID-HOSP-X", "QRID^XAVIER"),
                               (SHARED, "QRID-HOSP-Y", "QRID^YVONNE")]
    assert [int(ds.NumberOfPatientRelatedStudies) for ds in found] == [1, 1, 1]
    found = findscu(stored, tmp_path, "-P", "QueryRetrieveLevel=PATIENT", f"PatientID={SHARED}",
                    "IssuerOfPatientID=QRID-HOSP-X", "PatientName")
    assert patients(found) == [(SHARED, "QRID-HOSP-X", "QRID^XAVIER")]


def test_an_answer_names_its_issuer_also_when_not_asked(stored: NodeProcess,
                                                        tmp_path: Path) -> None:
    """A requester asking PatientID alone would get three answers it cannot tell apart (and
    could take for one patient): the issuer that qualifies each PatientID comes with it."""
    for model, level in (("-P", "PATIENT"), ("-P", "STUDY"), ("-S", "STUDY")):
        found = findscu(stored, tmp_path, model, f"QueryRetrieveLevel={level}",
                        f"PatientID={SHARED}", "PatientName")
        assert patients(found) == [(SHARED, "", "QRID^HOME"),
                                   (SHARED, "QRID-HOSP-X", "QRID^XAVIER"),
                                   (SHARED, "QRID-HOSP-Y", "QRID^YVONNE")], (model, level)


def test_a_study_level_find_matches_the_issuer(stored: NodeProcess, tmp_path: Path) -> None:
    for model in ("-P", "-S"):
        found = findscu(stored, tmp_path, model, "QueryRetrieveLevel=STUDY",
                        f"PatientID={SHARED}", "IssuerOfPatientID=QRID-HOSP-Y", "PatientName",
                        "StudyInstanceUID")
        assert [str(ds.StudyInstanceUID) for ds in found] == [HOSP_Y.study_uid]
        assert patients(found) == [(SHARED, "QRID-HOSP-Y", "QRID^YVONNE")]
        # An empty IssuerOfPatientID is universal matching: every issuer, each its own.
        found = findscu(stored, tmp_path, model, "QueryRetrieveLevel=STUDY",
                        f"PatientID={SHARED}", "IssuerOfPatientID=", "StudyInstanceUID")
        assert sorted(str(ds.StudyInstanceUID) for ds in found) == sorted(
            s.study_uid for s in (HOME, HOSP_X, HOSP_Y))
        assert len({str(ds.get("IssuerOfPatientID", "")) for ds in found}) == 3


def test_studies_without_patient_id_are_patients_of_their_own(stored: NodeProcess,
                                                              tmp_path: Path) -> None:
    """An empty PatientID key is universal matching: it never gathers the studies without
    PatientID into one patient."""
    found = findscu(stored, tmp_path, "-P", "QueryRetrieveLevel=PATIENT", "PatientID=",
                    "PatientName=QRIDNOID^*", "NumberOfPatientRelatedStudies")
    assert patients(found) == [("", "", "QRIDNOID^ONE"), ("", "", "QRIDNOID^TWO")]
    assert [int(ds.NumberOfPatientRelatedStudies) for ds in found] == [1, 1]


@pytest.mark.parametrize("issuer", ["*", "QRID-HOSP-*", "QRID-HOSP-?"])
def test_a_patient_level_move_whose_issuer_matches_several_is_refused(
        stored: NodeProcess, storescp: StoreSCP, issuer: str) -> None:
    """An IssuerOfPatientID that is a wildcard names the PatientID's patients of several
    issuers just as an absent one does: refused, nothing sent."""
    storescp.clear()
    keys = ["QueryRetrieveLevel=PATIENT", f"PatientID={SHARED}", f"IssuerOfPatientID={issuer}"]
    log = retrieve("movescu", stored, keys, "-aem", storescp.ae_title)
    assert "DataSetDoesNotMatchSOPClass" in log, log
    assert storescp.received() == []


def test_a_patient_level_move_with_a_wildcard_of_one_issuer_moves_that_patient(
        stored: NodeProcess, storescp: StoreSCP) -> None:
    storescp.clear()
    keys = ["QueryRetrieveLevel=PATIENT", f"PatientID={SHARED}", "IssuerOfPatientID=*-X"]
    log = retrieve("movescu", stored, keys, "-aem", storescp.ae_title)
    assert "Final Move Response (Success)" in log, log
    assert studies_in(storescp.received()) == {HOSP_X.study_uid}


def test_a_patient_level_get_names_one_patient_by_id_and_issuer(
        stored: NodeProcess, tmp_path: Path) -> None:
    """C-GET reads the identifier as C-MOVE does: the PatientID alone (or with a wildcard
    issuer) is refused, the issuer gets that patient's images only."""
    for n, issuer in enumerate(("", "*")):
        folder = tmp_path / f"refused-{n}"
        folder.mkdir()
        keys = ["QueryRetrieveLevel=PATIENT", f"PatientID={SHARED}"]
        log = retrieve("getscu", stored, keys + ([f"IssuerOfPatientID={issuer}"] if issuer
                                                 else []), "-od", str(folder))
        assert "DataSetDoesNotMatchSOPClass" in log, log
        assert list(folder.iterdir()) == []
    folder = tmp_path / "named"
    folder.mkdir()
    retrieve("getscu", stored, ["QueryRetrieveLevel=PATIENT", f"PatientID={SHARED}",
                                "IssuerOfPatientID=QRID-HOSP-Y"], "-od", str(folder))
    assert studies_in(sorted(folder.iterdir())) == {HOSP_Y.study_uid}
