"""QIDO-RS against the serving node, through the field's client (dicomweb-client): matching,
returned attributes, paging, negotiation, and what a viewer session may see."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import ComprehensiveSRStorage, CTImageStorage, MRImageStorage

from tests.factory import StudySpec, uid, write_study
from tests.peers import NodeProcess, dcmtk
from tests.viewer_data import sr_instance

ROLE = "dicomweb-qido"
ALPHA = StudySpec(patient_id="QIDO-A", patient_name="QIDO^ALPHA", study_uid=uid(1950, 1),
                  accession="QIDOACC1", study_date="20230105", modality="CT", series=2,
                  instances_per_series=3, rows=8, columns=8)
ALPHA_PRIOR = StudySpec(patient_id="QIDO-A", patient_name="QIDO^ALPHA", study_uid=uid(1950, 2),
                        accession="QIDOACC2", study_date="20190610", modality="MR",
                        instances_per_series=2, rows=8, columns=8)
BETA = StudySpec(patient_id="QIDO-B", patient_name="QIDO^BETA", study_uid=uid(1950, 3),
                 accession="QIDOACC3", study_date="20230301", modality="CT",
                 instances_per_series=1, rows=8, columns=8)
STUDIES = (ALPHA, ALPHA_PRIOR, BETA)


@pytest.fixture(scope="module")
def stored(node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> NodeProcess:
    folder = tmp_path_factory.mktemp("qido-data")
    for spec in STUDIES:
        write_study(folder / spec.study_uid, spec)
    result = dcmtk("storescu", "-aec", node.ae_title, "+sd", "+r", "127.0.0.1",
                   str(node.dicom_port), str(folder))
    assert result.returncode == 0, result.stderr
    added = node.cli("role", "add", ROLE, "--allow", "search")
    assert added.returncode == 0 or "exists" in added.stderr, added.stderr
    return node


@pytest.fixture(scope="module")
def client(stored: NodeProcess) -> DICOMwebClient:
    return DICOMwebClient(f"{stored.http_url}/dicom-web",
                          headers={"Authorization": stored.api_key})


def session_client(node: NodeProcess, **params: str
                   ) -> tuple[DICOMwebClient, requests.Session]:
    """A browser's view: a token for `params`, redeemed once, then the session cookie (the
    client, and the browser's HTTP session for requests the client does not make)."""
    token = requests.get(f"{node.http_url}/ngv/obscurl", timeout=30,
                         headers={"Authorization": node.api_key},
                         params={"username": "qido", "role": ROLE, **params})
    assert token.status_code == 200, token.text
    browser = requests.Session()
    opened = browser.get(f"{node.http_url}/ngv", params={"q": token.text}, timeout=30,
                         allow_redirects=False)
    assert opened.status_code == 302, opened.text
    assert "ngv_session" in browser.cookies
    return DICOMwebClient(f"{node.http_url}/dicom-web", session=browser), browser


def value(result: dict[str, Any], tag: str) -> Any:
    values = result.get(tag, {}).get("Value")
    return values[0] if values else None


def study_uids(results: list[dict[str, Any]]) -> list[str]:
    return sorted(str(value(r, "0020000D")) for r in results)


def ours(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results that belong to this module's studies (the session node holds others)."""
    mine = {s.study_uid for s in STUDIES}
    return [r for r in results if value(r, "0020000D") in mine]


def test_studies_match_by_patient_id_with_the_required_attributes(client: DICOMwebClient
                                                                   ) -> None:
    found = client.search_for_studies(search_filters={"PatientID": "QIDO-A"})
    assert study_uids(found) == sorted([ALPHA.study_uid, ALPHA_PRIOR.study_uid])
    alpha = next(r for r in found if value(r, "0020000D") == ALPHA.study_uid)
    assert value(alpha, "00100010") == {"Alphabetic": "QIDO^ALPHA"}
    assert value(alpha, "00080050") == "QIDOACC1"
    assert value(alpha, "00080020") == "20230105"
    assert alpha["00080061"]["Value"] == ["CT"]
    assert value(alpha, "00201206") == 2  # NumberOfStudyRelatedSeries
    assert value(alpha, "00201208") == 6  # NumberOfStudyRelatedInstances
    assert value(alpha, "00080056") == "ONLINE"
    assert value(alpha, "00081190").endswith(f"/dicom-web/studies/{ALPHA.study_uid}")
    assert alpha["00081190"]["vr"] == "UR" and alpha["00201208"]["vr"] == "IS"


@pytest.mark.parametrize(("filters", "expected"), [
    ({"StudyDate": "20230101-20231231"}, [ALPHA, BETA]),
    ({"StudyDate": "-20200101"}, [ALPHA_PRIOR]),
    ({"PatientName": "QIDO^B*"}, [BETA]),
    ({"PatientName": "qido^alph?"}, [ALPHA, ALPHA_PRIOR]),
    ({"00080050": "QIDOACC3"}, [BETA]),
    ({"ModalitiesInStudy": "MR"}, [ALPHA_PRIOR]),
    ({"StudyInstanceUID": f"{ALPHA.study_uid},{BETA.study_uid}"}, [ALPHA, BETA]),
    ({"StudyDate": "2023.01.05"}, [ALPHA]),
    ({"StudyDate": "20230105-"}, [ALPHA, BETA]),
    ({"StudyDate": "2019*"}, [ALPHA_PRIOR]),
    ({"StudyDate": "20190610,20230301"}, [ALPHA_PRIOR, BETA]),
    ({"StudyDate": "-20200101", "StudyTime": "1000-1015"}, [ALPHA_PRIOR]),
], ids=["date-range", "open-range", "wildcard", "case-insensitive-name", "tag", "modality",
        "uid-list", "old-date-form", "range-from", "date-wildcard", "date-list", "time-range"])
def test_studies_matching(client: DICOMwebClient, filters: dict[str, str],
                          expected: list[StudySpec]) -> None:
    found = ours(client.search_for_studies(search_filters=filters))
    assert study_uids(found) == sorted(s.study_uid for s in expected)


def test_series_and_instances_of_a_study(client: DICOMwebClient) -> None:
    series = client.search_for_series(ALPHA.study_uid)
    assert sorted(value(s, "0020000E") for s in series) == [f"{ALPHA.study_uid}.1",
                                                              f"{ALPHA.study_uid}.2"]
    assert all(value(s, "00201209") == 3 and value(s, "00080060") == "CT" for s in series)
    instances = client.search_for_instances(ALPHA.study_uid, f"{ALPHA.study_uid}.2")
    assert sorted(value(i, "00080018") for i in instances) == [
        f"{ALPHA.study_uid}.2.{n}" for n in (1, 2, 3)]
    assert all(value(i, "00081190").endswith(f"/instances/{value(i, '00080018')}")
               for i in instances)
    everywhere = client.search_for_instances(search_filters={
        "SOPInstanceUID": f"{BETA.study_uid}.1.1"})
    # Outside a study's path an instance names its study and patient too.
    assert [value(i, "0020000D") for i in everywhere] == [BETA.study_uid]
    assert value(everywhere[0], "00100020") == "QIDO-B"


def test_paging_and_includefield(client: DICOMwebClient) -> None:
    filters = {"PatientID": "QIDO-A"}
    pages = [client.search_for_instances(search_filters=filters, limit=2, offset=offset)
             for offset in (0, 2, 4, 6)]
    assert [len(p) for p in pages] == [2, 2, 2, 2]
    uids = [value(i, "00080018") for page in pages for i in page]
    assert len(set(uids)) == 8
    assert client.search_for_instances(search_filters=filters, offset=8) == []
    found = client.search_for_studies(search_filters={"PatientID": "QIDO-B"},
                                      fields=["PatientBirthDate", "00081030"])
    assert value(found[0], "00100030") == "19700101"
    assert value(found[0], "00081030") == "CT CHEST"
    every = client.search_for_studies(search_filters={"PatientID": "QIDO-B"}, fields=["all"])
    assert value(every[0], "00080062") is not None  # SOPClassesInStudy


def test_negotiation_is_lenient_and_refuses_what_it_cannot_give(stored: NodeProcess) -> None:
    url = f"{stored.http_url}/dicom-web/studies"
    key = {"Authorization": stored.api_key}
    for accept in ("application/dicom+json", "application/json", "*/*",
                   'multipart/related; type="application/dicom+json"',
                   "multipart/related; type=application/dicom+json"):
        response = requests.get(url, headers={**key, "Accept": accept}, timeout=30,
                                params={"PatientID": "QIDO-B"})
        assert response.status_code == 200, (accept, response.text)
        assert response.headers["Content-Type"].startswith("application/dicom+json")
    refused = requests.get(url, headers={**key, "Accept": "application/xml"}, timeout=30)
    assert refused.status_code == 406
    assert "application/xml" in refused.json()["error"]


def test_bad_queries_are_400_naming_the_parameter(stored: NodeProcess) -> None:
    url = f"{stored.http_url}/dicom-web/studies"
    key = {"Authorization": stored.api_key}
    for params, named in (({"limit": "many"}, "limit"), ({"offset": "-1"}, "offset"),
                          ({"StudyInstanceUID": "1.2.x"}, "StudyInstanceUID"),
                          ({"not-a-key": "1"}, "not-a-key")):
        response = requests.get(url, headers=key, params=params, timeout=30)
        assert response.status_code == 400, response.text
        assert named in response.json()["error"]
    unsupported = requests.get(url, headers=key, timeout=30,
                               params={"PatientID": "QIDO-B", "PatientWeight": "70"})
    assert unsupported.status_code == 200
    assert "PatientWeight" in unsupported.headers["Warning"]


@pytest.mark.parametrize(("path", "name", "text"), [
    ("/studies", "StudyDate", "2024-13-45"),
    ("/studies", "StudyDate", "abc"),
    ("/studies", "StudyDate", "20241345"),
    ("/studies", "StudyDate", "20230229"),
    ("/studies", "StudyDate", "20230101-2023"),
    ("/studies", "StudyDate", "abc-20231231"),
    ("/studies", "StudyDate", "-"),
    ("/studies", "StudyDate", "20230105,abc"),
    ("/studies", "00080020", "2023-01-05"),
    ("/studies", "PatientBirthDate", "1970-01-01"),
    ("/studies", "StudyTime", "2500"),
    ("/studies", "StudyTime", "10:15"),
    ("/studies", "StudyTime", "0800-1260"),
    ("/instances", "NumberOfFrames", "abc"),
    ("/instances", "NumberOfFrames", "99999999999"),
])
def test_a_malformed_date_time_or_number_is_400_naming_the_parameter(
        stored: NodeProcess, path: str, name: str, text: str) -> None:
    """PS3.18: an invalid query parameter value is 400, not a search that finds
    nothing (204)."""
    response = requests.get(f"{stored.http_url}/dicom-web{path}", timeout=30,
                            headers={"Authorization": stored.api_key},
                            params={"PatientID": "QIDO-A", name: text})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["field"] == name and body["error"].startswith(f"{name}: not a")


def test_no_match_is_204(client: DICOMwebClient, stored: NodeProcess) -> None:
    response = requests.get(f"{stored.http_url}/dicom-web/studies", timeout=30,
                            headers={"Authorization": stored.api_key},
                            params={"PatientID": "NOBODY-AT-ALL"})
    assert response.status_code == 204 and response.content == b""
    assert client.search_for_studies(search_filters={"PatientID": "NOBODY-AT-ALL"}) == []


def test_without_key_or_session_is_401_and_a_wrong_key_is_refused(stored: NodeProcess) -> None:
    url = f"{stored.http_url}/dicom-web/studies"
    assert requests.get(url, timeout=30).status_code == 401
    assert requests.get(url, headers={"Authorization": "wrong"}, timeout=30).status_code == 401


def test_a_session_sees_its_grant_only(stored: NodeProcess) -> None:
    browser, cookies = session_client(stored, studyUID=ALPHA.study_uid)
    # An open search answers the grant: the study and the patient's history, never BETA.
    assert study_uids(browser.search_for_studies()) == sorted(
        [ALPHA.study_uid, ALPHA_PRIOR.study_uid])
    assert browser.search_for_studies(search_filters={"PatientID": "QIDO-B"}) == []
    assert browser.search_for_instances(search_filters={"PatientID": "QIDO-B"}) == []
    # A study outside the grant, named by its path: 403, without saying whether it exists.
    outside = cookies.get(f"{stored.http_url}/dicom-web/studies/{BETA.study_uid}/series",
                          timeout=30)
    assert outside.status_code == 403


def test_an_anonymized_session_gets_no_identifiers(stored: NodeProcess) -> None:
    browser, _ = session_client(stored, studyUID=ALPHA.study_uid, anonymize="true")
    found = browser.search_for_studies()
    assert study_uids(found) == sorted([ALPHA.study_uid, ALPHA_PRIOR.study_uid])
    for result in found:
        for tag in ("00100010", "00100020", "00100030", "00080050", "00080090"):
            assert "Value" not in result.get(tag, {}), (tag, result[tag])
    text = str(browser.search_for_instances(ALPHA.study_uid))
    assert "QIDO^ALPHA" not in text and "QIDO-A" not in text and "QIDOACC1" not in text


def test_wildcard_matching_is_case_sensitive_on_every_database(client: DICOMwebClient) -> None:
    """PS3.4 C.2.2.2.4: `*` and `?` match any characters, the rest exactly as written (Person
    Names aside, which the node matches in any case). SQLite's LIKE ignores case; PostgreSQL's
    does not: both answer alike."""
    def accession(pattern: str) -> list[str]:
        return study_uids(ours(client.search_for_studies(
            search_filters={"AccessionNumber": pattern})))

    assert accession("*ACC1") == [ALPHA.study_uid]
    assert accession("QIDO?CC1") == [ALPHA.study_uid]
    for other_case in ("*acc1", "QIDO*acc1", "*idoACC1", "qido*", "QIDO?cc1"):
        assert accession(other_case) == [], other_case
    assert study_uids(ours(client.search_for_studies(
        search_filters={"PatientName": "*alpha"}))) == sorted([ALPHA.study_uid,
                                                               ALPHA_PRIOR.study_uid])


def test_documents_hidden_from_a_session_do_not_match_its_study_lists(
        stored: NodeProcess, client: DICOMwebClient, tmp_path: Path) -> None:
    """ModalitiesInStudy and SOPClassesInStudy match over what the session is shown, as their
    values are: a study whose only SR is hidden does not match SR, nor the SR's class."""
    study = StudySpec(patient_id="QIDO-D", patient_name="QIDO^DOCUMENT", study_uid=uid(1950, 4),
                      modality="CT", instances_per_series=1, rows=8, columns=8)
    write_study(tmp_path / "study", study)
    sr_instance(study).save_as(tmp_path / "study" / "report.dcm", enforce_file_format=True)
    sent = dcmtk("storescu", "-aec", stored.ae_title, "+sd", "+r", "127.0.0.1",
                 str(stored.dicom_port), str(tmp_path / "study"))
    assert sent.returncode == 0, sent.stderr
    viewer, _ = session_client(stored, studyUID=study.study_uid)
    mine = {"StudyInstanceUID": study.study_uid}
    for filters, by_key, by_session in (
            ({"ModalitiesInStudy": "SR"}, True, False),
            ({"ModalitiesInStudy": "SR,MR"}, True, False),
            ({"ModalitiesInStudy": "CT"}, True, True),
            ({"SOPClassesInStudy": ComprehensiveSRStorage}, True, False),
            ({"SOPClassesInStudy": f"{MRImageStorage},{CTImageStorage}"}, True, True),
            ({"SOPClassesInStudy": MRImageStorage}, False, False)):
        assert len(client.search_for_studies(search_filters={**mine, **filters})) == by_key, (
            filters)
        found = viewer.search_for_studies(search_filters=filters)
        assert study_uids(found) == ([study.study_uid] if by_session else []), filters
    [shown] = viewer.search_for_studies(search_filters={"ModalitiesInStudy": "CT"},
                                        fields=["SOPClassesInStudy"])
    assert shown["00080061"]["Value"] == ["CT"]
    assert shown["00080062"]["Value"] == [CTImageStorage]
