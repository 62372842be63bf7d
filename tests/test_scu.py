"""The node as an SCU toward Orthanc: echo, find and retrieve, from the CLI and the API."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.config import config_from_dict
from node.dimse import scu
from tests.factory import StudySpec, uid, write_study
from tests.index_db import rows
from tests.peers import NodeProcess, OrthancProcess, dcmtk, free_port, silent_listener


def upload_study(orthanc: OrthancProcess, folder: Path, spec: StudySpec) -> set[str]:
    """Put a study into Orthanc; returns its SOP Instance UIDs."""
    files = write_study(folder, spec)
    for path in files:
        orthanc.upload(path)
    return {path.stem for path in files}


def indexed(node: NodeProcess) -> dict[str, tuple[str, str]]:
    """SOP Instance UID -> (storage path, origin) for every instance in the node's index."""
    return {sop: (path, origin) for sop, path, origin
            in rows(node.data_dir, "SELECT sop_uid, path, origin FROM instances")}


def retrieved_from_orthanc(node: NodeProcess, sent: set[str]) -> dict[str, tuple[str, str]]:
    """The node's index, which must hold exactly the `sent` instances, retrieved from Orthanc."""
    index = indexed(node)
    assert set(index) == sent
    assert {origin for _, origin in index.values()} == {"retrieve:ORTHANC"}
    return index


def orthanc_source(orthanc: OrthancProcess, retrieve: str) -> dict[str, object]:
    return {"ae_title": orthanc.ae_title, "host": "127.0.0.1", "port": orthanc.dicom_port,
            "retrieve": retrieve}


@pytest.fixture(scope="module")
def find_study(orthanc: OrthancProcess, tmp_path_factory: pytest.TempPathFactory) -> StudySpec:
    spec = StudySpec(study_uid=uid(3001), patient_id="SCU-FIND-3001",
                     accession="SCUACC3001", patient_name="FIND^SCU")
    upload_study(orthanc, tmp_path_factory.mktemp("find-study"), spec)
    return spec


@pytest.fixture
def silent_port() -> Iterator[int]:
    with silent_listener() as port:
        yield port


@pytest.mark.dialect_neutral  # echo and find speak to a source node, never to the index
def test_echo_prints_ok_and_round_trip_time(node: NodeProcess) -> None:
    result = node.cli("echo", "ORTHANC")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"ORTHANC: OK \(\d+ ms\)\n", result.stdout), result.stdout


@pytest.mark.dialect_neutral  # echo and find speak to a source node, never to the index
def test_echo_to_a_node_that_is_down_fails_with_the_reason(tmp_path: Path) -> None:
    other = NodeProcess(tmp_path / "node", source_nodes=[
        {"ae_title": "DOWN", "host": "127.0.0.1", "port": free_port()}])
    other.write_config()
    result = other.cli("echo", "DOWN")
    assert result.returncode == 1
    assert "DOWN" in result.stderr and "refused" in result.stderr, result.stderr


@pytest.mark.parametrize("command", [("echo",), ("find", "PatientID=X"), ("retrieve", "1.2.3")])
def test_unknown_node_on_the_cli_exits_2_naming_it(node: NodeProcess, command: tuple[str, ...]
                                                   ) -> None:
    result = node.cli(command[0], "NOSUCHNODE", *command[1:])
    assert result.returncode == 2
    assert "NOSUCHNODE" in result.stderr


@pytest.mark.dialect_neutral  # echo and find speak to a source node, never to the index
def test_find_by_patient_id_lists_the_study(node: NodeProcess, find_study: StudySpec) -> None:
    result = node.cli("find", "ORTHANC", f"PatientID={find_study.patient_id}")
    assert result.returncode == 0, result.stderr
    assert find_study.study_uid in result.stdout
    assert find_study.accession in result.stdout
    assert "1 match(es) at STUDY level; answered: ORTHANC" in result.stdout


@pytest.mark.dialect_neutral  # echo and find speak to a source node, never to the index
def test_find_by_accession_number_lists_the_study(node: NodeProcess, find_study: StudySpec
                                                  ) -> None:
    result = node.cli("find", "ORTHANC", f"AccessionNumber={find_study.accession}")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if find_study.study_uid in line)
    assert row.split()[:3] == ["ORTHANC", find_study.patient_id, "FIND^SCU"]


@pytest.mark.dialect_neutral  # echo and find speak to a source node, never to the index
def test_find_at_series_level_lists_each_series(node: NodeProcess, find_study: StudySpec
                                                ) -> None:
    result = node.cli("find", "ORTHANC", f"StudyInstanceUID={find_study.study_uid}",
                      "--level", "series")
    assert result.returncode == 0, result.stderr
    assert f"{find_study.study_uid}.1" in result.stdout


@pytest.mark.dialect_neutral  # echo and find speak to a source node, never to the index
def test_find_with_an_unknown_keyword_is_refused_naming_it(node: NodeProcess) -> None:
    result = node.cli("find", "ORTHANC", "PatientIdentity=1")
    assert result.returncode == 1
    assert "PatientIdentity" in result.stderr


@pytest.mark.dialect_neutral  # echo and find speak to a source node, never to the index
async def test_find_reports_down_and_silent_nodes_without_delaying_the_answer(
    orthanc: OrthancProcess, find_study: StudySpec, silent_port: int
) -> None:
    timeout = 3.0
    config = config_from_dict({
        "dicom": {"query_timeout": timeout},
        "source_nodes": [
            orthanc_source(orthanc, "C-MOVE"),
            {"ae_title": "DOWN", "host": "127.0.0.1", "port": free_port()},
            {"ae_title": "SILENT", "host": "127.0.0.1", "port": silent_port},
        ],
    })
    started = time.monotonic()
    result = await scu.find(config, config.source_nodes, "STUDY",
                            {"PatientID": find_study.patient_id})
    elapsed = time.monotonic() - started
    assert elapsed < timeout + 2
    assert result.answered == ["ORTHANC"]
    assert [(ae, ds.StudyInstanceUID) for ae, ds in result.matches] == [
        ("ORTHANC", find_study.study_uid)]
    failures = {f.ae_title: f.message for f in result.failed}
    assert set(failures) == {"DOWN", "SILENT"}
    assert "refused" in failures["DOWN"]
    assert "timed out" in failures["SILENT"]


@pytest.mark.dialect_neutral  # echo and find speak to a source node, never to the index
async def test_find_on_a_down_node_fails_at_once() -> None:
    config = config_from_dict({"source_nodes": [
        {"ae_title": "DOWN", "host": "127.0.0.1", "port": free_port()}]})
    started = time.monotonic()
    result = await scu.find(config, config.source_nodes, "PATIENT", {"PatientID": "X"})
    assert time.monotonic() - started < 2
    assert result.answered == [] and [f.ae_title for f in result.failed] == ["DOWN"]


def test_retrieve_by_c_move_lands_in_the_serving_node(
    node: NodeProcess, orthanc: OrthancProcess, tmp_path: Path
) -> None:
    spec = StudySpec(study_uid=uid(3002), patient_id="SCU-MOVE-3002", accession="SCUACC3002",
                     series=2, instances_per_series=2)
    sent = upload_study(orthanc, tmp_path / "study", spec)
    result = node.cli("retrieve", "ORTHANC", spec.study_uid)
    assert result.returncode == 0, result.stderr
    assert "C-MOVE completed 4, failed 0" in result.stdout
    assert "4 instance(s) of the study stored here" in result.stdout
    index = indexed(node)
    assert sent <= set(index)
    for sop in sent:
        assert (node.data_dir / "storage" / index[sop][0]).is_file()
    # The sub-operations came in on the serving node's SCP beside any other C-STORE: they are
    # recorded as retrieved, naming the source.
    assert {index[sop][1] for sop in sent} == {"retrieve:ORTHANC"}
    assert node.is_running()


def test_a_c_move_asked_by_another_ae_is_recorded_as_a_plain_store(
    node: NodeProcess, orthanc: OrthancProcess, tmp_path: Path
) -> None:
    spec = StudySpec(study_uid=uid(3005), patient_id="SCU-MOVE-3005", accession="SCUACC3005")
    sent = upload_study(orthanc, tmp_path / "study", spec)
    result = dcmtk("movescu", "-S", "-aet", "WORKSTATION", "-aec", orthanc.ae_title,
                   "-aem", node.ae_title, "-k", "QueryRetrieveLevel=STUDY",
                   "-k", f"StudyInstanceUID={spec.study_uid}", "127.0.0.1",
                   str(orthanc.dicom_port))
    assert result.returncode == 0, result.stderr
    index = indexed(node)
    assert sent <= set(index)
    assert {index[sop][1] for sop in sent} == {"dicom:ORTHANC"}


def test_retrieve_by_c_get_is_ingested_by_the_cli(orthanc: OrthancProcess, tmp_path: Path
                                                  ) -> None:
    spec = StudySpec(study_uid=uid(3003), patient_id="SCU-GET-3003", accession="SCUACC3003",
                     instances_per_series=3)
    sent = upload_study(orthanc, tmp_path / "study", spec)
    getter = NodeProcess(tmp_path / "getnode", ae_title="GETNODE",
                         source_nodes=[orthanc_source(orthanc, "C-GET")])
    getter.write_config()
    result = getter.cli("retrieve", "ORTHANC", spec.study_uid)
    assert result.returncode == 0, result.stderr
    assert "C-GET completed 3, failed 0" in result.stdout
    index = retrieved_from_orthanc(getter, sent)
    for path, _ in index.values():
        assert (getter.data_dir / "storage" / path).is_file()


def test_retrieve_by_c_move_without_a_serving_node_uses_a_temporary_scp(
    orthanc: OrthancProcess, tmp_path: Path
) -> None:
    spec = StudySpec(study_uid=uid(3004), patient_id="SCU-TMP-3004", accession="SCUACC3004")
    sent = upload_study(orthanc, tmp_path / "study", spec)
    offline = NodeProcess(tmp_path / "offline", ae_title="OFFLINENODE",
                          source_nodes=[orthanc_source(orthanc, "C-MOVE")])
    offline.write_config()
    orthanc.set_modality("OFFLINENODE", "127.0.0.1", offline.dicom_port)
    result = offline.cli("retrieve", "ORTHANC", spec.study_uid)
    assert result.returncode == 0, result.stderr
    assert "C-MOVE completed 2, failed 0" in result.stdout
    retrieved_from_orthanc(offline, sent)
