"""C-FIND SCP against DCMTK's findscu: every level, every matching rule of PS3.4 C.2.2.2.

The data is three studies of two patients (IDs FIND-...), stored once through storescu.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.factory import StudySpec, uid, write_study
from tests.peers import NodeProcess, dcmtk

ALICE_CT = StudySpec(patient_id="FIND-001", patient_name="Qrdoe^Alice", study_uid=uid(2001),
                     accession="FINDACC1", study_date="20240105", modality="CT", series=2,
                     instances_per_series=3)
ALICE_MR = StudySpec(patient_id="FIND-001", patient_name="Qrdoe^Alice", study_uid=uid(2002),
                     accession="FINDACC2", study_date="20240210", modality="MR", series=1,
                     instances_per_series=2)
MULLER_US = StudySpec(patient_id="FIND-003", patient_name="Qrmüller^Jörg", study_uid=uid(2004),
                      accession="FINDACC4", study_date="20230101", modality="US",
                      instances_per_series=1, charset="ISO_IR 192")
YAMADA_MR = StudySpec(patient_id="FIND-004", patient_name="Qryamada^Tarou=山田^太郎=やまだ^たろう",
                      study_uid=uid(2005), accession="FINDACC5", study_date="20220101",
                      modality="MR", instances_per_series=1, charset="ISO_IR 192")
BOB_CT = StudySpec(patient_id="FIND-002", patient_name="QRDOE^BOB", study_uid=uid(2003),
                   accession="FINDACC3", study_date="20240315", modality="CT", series=1,
                   instances_per_series=1)
STUDIES = (ALICE_CT, ALICE_MR, BOB_CT, MULLER_US, YAMADA_MR)

_counter = itertools.count()


@pytest.fixture(scope="module")
def find_node(node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> NodeProcess:
    folder = tmp_path_factory.mktemp("find-data")
    for spec in STUDIES:
        write_study(folder / spec.study_uid, spec)
    result = dcmtk("storescu", "-aec", node.ae_title, "+sd", "+r", "127.0.0.1",
                   str(node.dicom_port), str(folder))
    assert result.returncode == 0, result.stderr
    return node


def findscu(node: NodeProcess, tmp_path: Path, level: str, *keys: str,
            model: str = "-S") -> tuple[list[Dataset], str]:
    """Run findscu; returns the responses it wrote (one file each) and its log."""
    out = tmp_path / f"responses-{next(_counter)}"
    out.mkdir()
    args = ["-v", model, "-aec", node.ae_title, "-X", "-od", str(out),
            "-k", f"QueryRetrieveLevel={level}"]
    for key in keys:
        args += ["-k", key]
    result = dcmtk("findscu", *args, "127.0.0.1", str(node.dicom_port))
    assert result.returncode == 0, result.stderr
    return [dcmread(p) for p in sorted(out.iterdir())], result.stdout + result.stderr


def values(responses: list[Dataset], keyword: str) -> list[str]:
    return sorted(str(ds.get(keyword, "")) for ds in responses)


def test_patient_level_returns_each_patient_with_counts(find_node: NodeProcess,
                                                        tmp_path: Path) -> None:
    responses, _ = findscu(find_node, tmp_path, "PATIENT", "PatientID=FIND-*", "PatientName",
                           "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                           "NumberOfPatientRelatedInstances", model="-P")
    by_id = {str(ds.PatientID): ds for ds in responses}
    assert sorted(by_id) == ["FIND-001", "FIND-002", "FIND-003", "FIND-004"]
    alice = by_id["FIND-001"]
    assert str(alice.PatientName) == "Qrdoe^Alice"
    assert (alice.NumberOfPatientRelatedStudies, alice.NumberOfPatientRelatedSeries,
            alice.NumberOfPatientRelatedInstances) == (2, 3, 8)
    assert alice.QueryRetrieveLevel == "PATIENT"
    assert alice.RetrieveAETitle == find_node.ae_title


def test_study_level_by_patient_id_returns_the_patients_studies(find_node: NodeProcess,
                                                                tmp_path: Path) -> None:
    responses, _ = findscu(find_node, tmp_path, "STUDY", "PatientID=FIND-001",
                           "StudyInstanceUID", "AccessionNumber", "StudyDate",
                           "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
                           "PatientAge")
    assert values(responses, "StudyInstanceUID") == sorted([ALICE_CT.study_uid,
                                                            ALICE_MR.study_uid])
    ct = next(ds for ds in responses if ds.StudyInstanceUID == ALICE_CT.study_uid)
    assert (ct.AccessionNumber, ct.StudyDate) == ("FINDACC1", "20240105")
    assert (ct.NumberOfStudyRelatedSeries, ct.NumberOfStudyRelatedInstances) == (2, 6)
    # A key the index does not know comes back, empty.
    assert "PatientAge" in ct and ct.PatientAge == ""


def test_patient_root_study_level_under_a_patient(find_node: NodeProcess,
                                                  tmp_path: Path) -> None:
    responses, _ = findscu(find_node, tmp_path, "STUDY", "PatientID=FIND-002",
                           "StudyInstanceUID", model="-P")
    assert values(responses, "StudyInstanceUID") == [BOB_CT.study_uid]


def test_series_level_lists_the_series_of_a_study(find_node: NodeProcess,
                                                  tmp_path: Path) -> None:
    responses, _ = findscu(find_node, tmp_path, "SERIES", f"StudyInstanceUID={ALICE_CT.study_uid}",
                           "SeriesInstanceUID", "Modality", "NumberOfSeriesRelatedInstances")
    assert values(responses, "SeriesInstanceUID") == [f"{ALICE_CT.study_uid}.1",
                                                      f"{ALICE_CT.study_uid}.2"]
    assert {ds.Modality for ds in responses} == {"CT"}
    assert {ds.NumberOfSeriesRelatedInstances for ds in responses} == {3}


def test_image_level_lists_the_instances_of_a_series(find_node: NodeProcess,
                                                     tmp_path: Path) -> None:
    series_uid = f"{ALICE_CT.study_uid}.2"
    responses, _ = findscu(find_node, tmp_path, "IMAGE", f"StudyInstanceUID={ALICE_CT.study_uid}",
                           f"SeriesInstanceUID={series_uid}", "SOPInstanceUID", "SOPClassUID",
                           "InstanceNumber")
    assert values(responses, "SOPInstanceUID") == [f"{series_uid}.{i}" for i in (1, 2, 3)]
    assert values(responses, "InstanceNumber") == ["1", "2", "3"]


def test_star_wildcard_matches_a_name_prefix(find_node: NodeProcess, tmp_path: Path) -> None:
    responses, _ = findscu(find_node, tmp_path, "STUDY", "PatientName=QRDOE*",
                           "StudyInstanceUID")
    assert values(responses, "StudyInstanceUID") == sorted(
        s.study_uid for s in (ALICE_CT, ALICE_MR, BOB_CT))


def test_question_mark_matches_one_character(find_node: NodeProcess, tmp_path: Path) -> None:
    responses, _ = findscu(find_node, tmp_path, "STUDY", "PatientName=QRDOE^B?B",
                           "StudyInstanceUID")
    assert values(responses, "StudyInstanceUID") == [BOB_CT.study_uid]
    responses, _ = findscu(find_node, tmp_path, "STUDY", "PatientName=QRDOE^B?",
                           "StudyInstanceUID")
    assert responses == []


def test_sql_wildcards_in_values_are_literal(find_node: NodeProcess, tmp_path: Path) -> None:
    responses, _ = findscu(find_node, tmp_path, "STUDY", "PatientID=FIND%", "StudyInstanceUID")
    assert responses == []
    responses, _ = findscu(find_node, tmp_path, "STUDY", "PatientID=FIND_00*",
                           "StudyInstanceUID")
    assert responses == []


def test_person_names_match_case_insensitively(find_node: NodeProcess, tmp_path: Path) -> None:
    responses, _ = findscu(find_node, tmp_path, "STUDY", "PatientName=qrdoe^alice",
                           "StudyInstanceUID")
    assert values(responses, "StudyInstanceUID") == sorted([ALICE_CT.study_uid,
                                                            ALICE_MR.study_uid])
    # The stored spelling is what comes back.
    assert {str(ds.PatientName) for ds in responses} == {"Qrdoe^Alice"}


@pytest.mark.parametrize(
    ("date_range", "expected"),
    [
        ("20240201-20240229", [ALICE_MR]),
        ("-20240131", [ALICE_CT, MULLER_US, YAMADA_MR]),
        ("20240101-20240131", [ALICE_CT]),
        ("20240301-", [BOB_CT]),
        ("20240210", [ALICE_MR]),
    ],
)
def test_study_date_range_matching(find_node: NodeProcess, tmp_path: Path, date_range: str,
                                   expected: list[StudySpec]) -> None:
    responses, _ = findscu(find_node, tmp_path, "STUDY", "PatientID=FIND-*",
                           f"StudyDate={date_range}", "StudyInstanceUID")
    assert values(responses, "StudyInstanceUID") == sorted(s.study_uid for s in expected)


def test_list_of_uids_matches_each(find_node: NodeProcess, tmp_path: Path) -> None:
    responses, _ = findscu(find_node, tmp_path, "STUDY",
                           f"StudyInstanceUID={ALICE_CT.study_uid}\\{BOB_CT.study_uid}")
    assert values(responses, "StudyInstanceUID") == sorted([ALICE_CT.study_uid,
                                                            BOB_CT.study_uid])


def test_modalities_in_study_is_returned_and_matched(find_node: NodeProcess,
                                                     tmp_path: Path) -> None:
    responses, _ = findscu(find_node, tmp_path, "STUDY", "PatientID=FIND-*",
                           "ModalitiesInStudy=MR", "StudyInstanceUID")
    assert values(responses, "StudyInstanceUID") == sorted([ALICE_MR.study_uid,
                                                            YAMADA_MR.study_uid])
    assert responses[0].ModalitiesInStudy == "MR"
    responses, _ = findscu(find_node, tmp_path, "STUDY", "PatientID=FIND-*",
                           "ModalitiesInStudy=CT\\US", "StudyInstanceUID")
    assert values(responses, "StudyInstanceUID") == sorted([ALICE_CT.study_uid, BOB_CT.study_uid,
                                                            MULLER_US.study_uid])


@pytest.mark.parametrize("level", ["WARD", ""])
def test_invalid_level_gets_a_failure_and_the_node_keeps_serving(
    find_node: NodeProcess, tmp_path: Path, level: str
) -> None:
    responses, log = findscu(find_node, tmp_path, level, "PatientID=FIND-001")
    assert responses == []
    assert "Final Find Response (Error: DataSetDoesNotMatchSOPClass)" in log
    echo = dcmtk("echoscu", "-aec", find_node.ae_title, "127.0.0.1", str(find_node.dicom_port))
    assert echo.returncode == 0, echo.stderr


def test_patient_level_in_study_root_is_refused(find_node: NodeProcess, tmp_path: Path) -> None:
    responses, log = findscu(find_node, tmp_path, "PATIENT", "PatientID=FIND-001")
    assert responses == []
    assert "Final Find Response (Error: DataSetDoesNotMatchSOPClass)" in log


def test_names_in_utf8_come_back_in_their_character_set(find_node: NodeProcess,
                                                        tmp_path: Path) -> None:
    responses, _ = findscu(find_node, tmp_path, "STUDY", "SpecificCharacterSet=ISO_IR 192",
                           "PatientName=qrMÜLLER*", "StudyInstanceUID")
    assert values(responses, "StudyInstanceUID") == [MULLER_US.study_uid]
    assert responses[0].SpecificCharacterSet == "ISO_IR 192"
    assert str(responses[0].PatientName) == "Qrmüller^Jörg"


def test_an_alphabetic_name_matches_a_name_with_ideographic_groups(find_node: NodeProcess,
                                                                   tmp_path: Path) -> None:
    responses, _ = findscu(find_node, tmp_path, "STUDY", "PatientName=QRYAMADA^TAROU",
                           "StudyInstanceUID")
    assert values(responses, "StudyInstanceUID") == [YAMADA_MR.study_uid]
    assert str(responses[0].PatientName) == YAMADA_MR.patient_name
