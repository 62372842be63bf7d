"""The node's DICOMweb side by side with Orthanc's on the same data: QIDO-RS answers hold the
same studies, series and instances with the same values of the required attributes, and
metadata holds the same elements (bulk data aside)."""

from __future__ import annotations

from typing import Any

import pytest
from dicomweb_client.api import DICOMwebClient

from tests.factory import StudySpec, uid, write_jpeg_instance, write_study
from tests.peers import NodeProcess, OrthancProcess, dcmtk
from tests.viewer_data import sr_instance, write_all

SPEC = StudySpec(patient_id="SIDE-1", patient_name="SIDE^BY^SIDE", study_uid=uid(1970, 1),
                 accession="SIDEACC", study_date="20221130", series=2, instances_per_series=3,
                 rows=16, columns=16, birth_date="19650304", sex="M")

STUDY_KEYS = ("00080020", "00080030", "00080050", "00080061", "00080090", "00100010",
              "00100020", "00100030", "00100040", "0020000D", "00200010", "00201206",
              "00201208")
SERIES_KEYS = ("00080060", "0008103E", "0020000E", "00200011", "00201209")
INSTANCE_KEYS = ("00080016", "00080018", "00200013")
# Values that are not the instance's: Orthanc adds its own retrieve and availability values,
# the node the instance's stored transfer syntax (AvailableTransferSyntaxUID, which OHIF reads
# to tell a video from frames); each is checked on its own below.
NOT_COMPARED = frozenset({"00081190", "00080056", "00020010", "00083002"})
PIXEL_DATA = "7FE00010"


@pytest.fixture(scope="module")
def clients(node: NodeProcess, orthanc: OrthancProcess,
            tmp_path_factory: pytest.TempPathFactory) -> tuple[DICOMwebClient, DICOMwebClient]:
    folder = tmp_path_factory.mktemp("side-by-side")
    paths = write_study(folder / "ct", SPEC)
    write_jpeg_instance(folder / "jpeg.dcm", SPEC)
    paths.append(folder / "jpeg.dcm")
    paths += write_all(folder / "sr", [sr_instance(SPEC)])
    result = dcmtk("storescu", "-xy", "-aec", node.ae_title, "+sd", "+r", "127.0.0.1",
                   str(node.dicom_port), str(folder))
    assert result.returncode == 0, result.stderr
    for path in paths:
        orthanc.upload(path)
    return (DICOMwebClient(f"{node.http_url}/dicom-web",
                           headers={"Authorization": node.api_key}),
            DICOMwebClient(f"{orthanc.http_url}/dicom-web"))


def by_uid(results: list[dict[str, Any]], tag: str) -> dict[str, dict[str, Any]]:
    return {str(r[tag]["Value"][0]): r for r in results}


def values(result: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The compared attributes; a multi-valued list compared as a set (order is free)."""
    out: dict[str, Any] = {}
    for key in keys:
        found = result.get(key, {}).get("Value")
        if found is not None and len(found) > 1:
            found = sorted(map(str, found))
        out[key] = found
    return out


def test_studies_series_and_instances_answer_the_same(
        clients: tuple[DICOMwebClient, DICOMwebClient]) -> None:
    node, orthanc = clients
    filters = {"PatientID": SPEC.patient_id}
    mine = by_uid(node.search_for_studies(search_filters=filters), "0020000D")
    theirs = by_uid(orthanc.search_for_studies(search_filters=filters), "0020000D")
    assert sorted(mine) == sorted(theirs) == [SPEC.study_uid]
    assert values(mine[SPEC.study_uid], STUDY_KEYS) == values(theirs[SPEC.study_uid], STUDY_KEYS)
    mine_series = by_uid(node.search_for_series(SPEC.study_uid), "0020000E")
    theirs_series = by_uid(orthanc.search_for_series(SPEC.study_uid), "0020000E")
    assert sorted(mine_series) == sorted(theirs_series)
    for series_uid in mine_series:
        assert values(mine_series[series_uid], SERIES_KEYS) == values(
            theirs_series[series_uid], SERIES_KEYS), series_uid
    mine_instances = by_uid(node.search_for_instances(SPEC.study_uid), "00080018")
    theirs_instances = by_uid(orthanc.search_for_instances(SPEC.study_uid), "00080018")
    assert sorted(mine_instances) == sorted(theirs_instances)
    for sop in mine_instances:
        assert values(mine_instances[sop], INSTANCE_KEYS) == values(
            theirs_instances[sop], INSTANCE_KEYS), sop


def _comparable(element: dict[str, Any]) -> Any:
    if "BulkDataURI" in element or "InlineBinary" in element:
        return "bulk"
    if element.get("vr") == "SQ":
        return [{k: _comparable(v) for k, v in item.items() if k not in NOT_COMPARED}
                for item in element.get("Value", [])]
    return element.get("Value")


def test_metadata_holds_the_same_elements(clients: tuple[DICOMwebClient, DICOMwebClient]
                                          ) -> None:
    node, orthanc = clients
    mine = by_uid(node.retrieve_study_metadata(SPEC.study_uid), "00080018")
    theirs = by_uid(orthanc.retrieve_study_metadata(SPEC.study_uid), "00080018")
    assert sorted(mine) == sorted(theirs)
    for sop, ours in mine.items():
        other = theirs[sop]
        # Orthanc leaves out the pixel data of compressed instances; PS3.18 lists it as bulk
        # data, as the node does.
        tags = (set(ours) | set(other)) - NOT_COMPARED - {PIXEL_DATA}
        if "00280010" in ours:
            assert "BulkDataURI" in ours[PIXEL_DATA], sop
        stored_syntax = ours["00083002"]["Value"][0]
        assert stored_syntax.startswith("1.2.840.10008.1.2"), sop
        if "00020010" in other:  # Orthanc's copy of the file's transfer syntax, when it has one
            assert stored_syntax == other["00020010"]["Value"][0], sop
        assert {t: _comparable(ours[t]) if t in ours else None for t in tags} == {
            t: _comparable(other[t]) if t in other else None for t in tags}, sop
        assert {t: ours[t]["vr"] for t in tags} == {t: other[t]["vr"] for t in tags}, sop
