"""The viewer's JSON names each study's patient: one banner per patient of the session, each
study with its patient's session key, so that the page never shows a study under another
patient's name (GET /ngv/api/studies, the page's config, POST /ngv/api/search/open)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from node.index.patient_queries import studies_of_patients_of
from rest.viewer.grants import Grant
from rest.viewer.patient_studies import PatientBanner, study_listing
from tests.factory import StudySpec, uid
from tests.rest_support import ROLE, Api, running_app
from tests.viewer_data import ct_instances, write_all

ALPHA = StudySpec(study_uid=uid(8501), patient_id="PID-PAT-A", patient_name="ALDERWOOD^BRIONY",
                  study_date="20240301", birth_date="19610203", sex="F", rows=16, columns=16)
ALPHA_PRIOR = StudySpec(study_uid=uid(8502), patient_id="PID-PAT-A",
                        patient_name="ALDERWOOD^BRIONY", study_date="20210301",
                        birth_date="19610203", sex="F", rows=16, columns=16)
BETA = StudySpec(study_uid=uid(8503), patient_id="PID-PAT-B", patient_name="BRACKENRIDGE^CORMAC",
                 study_date="20220615", birth_date="19800405", sex="M", rows=16, columns=16)
BETA_PRIOR = StudySpec(study_uid=uid(8504), patient_id="PID-PAT-B",
                       patient_name="BRACKENRIDGE^CORMAC", study_date="20190101",
                       birth_date="19800405", sex="M", rows=16, columns=16)
# Alpha's PatientID from another hospital: another patient.
GAMMA = StudySpec(study_uid=uid(8505), patient_id="PID-PAT-A", issuer="OTHER-HOSP",
                  patient_name="GALLOWAY^DELPHINE", study_date="20230909", rows=16, columns=16)
NAMES = ("ALDERWOOD", "BRIONY", "BRACKENRIDGE", "CORMAC", "GALLOWAY", "PID-PAT-A", "PID-PAT-B")


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("viewer-patients")
    async with running_app(folder) as api:
        files = []
        for spec in (ALPHA, ALPHA_PRIOR, BETA, BETA_PRIOR, GAMMA):
            files += write_all(folder / spec.study_uid, ct_instances(spec, 1))
        for path in files:
            await api.services.ingestor.ingest_copy(path, "import")
        yield api


async def session(api: Api, *study_uids: str, **params: str) -> dict[str, str]:
    query = [("username", "u"), ("role", ROLE), *(("studyUID", u) for u in study_uids),
             *params.items()]
    _, cookie = await api.redeem(await api.token(query))
    assert cookie is not None
    return {"Cookie": f"ngv_session={cookie}"}


async def listing(api: Api, headers: dict[str, str]) -> dict[str, Any]:
    response = await api.client.get("/ngv/api/studies", headers=headers)
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


def whose(answer: dict[str, Any]) -> dict[str, str]:
    """Study UID -> the name its patient's banner shows."""
    names = {p["key"]: p["name"] for p in answer["patients"]}
    return {s["studyInstanceUID"]: names[s["patient"]] for s in answer["studies"]}


async def test_each_study_names_its_patient_and_each_patient_has_a_banner(api: Api) -> None:
    answer = await listing(api, await session(api, ALPHA.study_uid))
    assert answer["patients"] == [{
        "key": "p1", "name": "ALDERWOOD, BRIONY", "patientID": "PID-PAT-A",
        "birthDate": "19610203", "sex": "F", "received": True}]
    assert [(s["studyInstanceUID"], s["purpose"], s["patient"]) for s in answer["studies"]] == [
        (ALPHA.study_uid, "open", "p1"), (ALPHA_PRIOR.study_uid, "history", "p1")]


async def test_a_study_opened_from_search_is_listed_under_its_own_patient(api: Api) -> None:
    headers = await session(api, ALPHA.study_uid, hideSearch="false")
    opened = await api.client.post("/ngv/api/search/open", headers=headers,
                                   json={"studyInstanceUID": BETA.study_uid, "source": ""})
    assert opened.status == 200, await opened.text()
    answer = await listing(api, headers)
    assert [p["name"] for p in answer["patients"]] == ["ALDERWOOD, BRIONY",
                                                       "BRACKENRIDGE, CORMAC"]
    assert whose(answer) == {
        ALPHA.study_uid: "ALDERWOOD, BRIONY", ALPHA_PRIOR.study_uid: "ALDERWOOD, BRIONY",
        BETA.study_uid: "BRACKENRIDGE, CORMAC", BETA_PRIOR.study_uid: "BRACKENRIDGE, CORMAC"}
    searched = next(s for s in answer["studies"] if s["studyInstanceUID"] == BETA.study_uid)
    assert searched["purpose"] == "search"


async def test_a_context_of_two_patients_opens_with_one_banner_and_its_studies(
        api: Api) -> None:
    headers = await session(api, ALPHA.study_uid, BETA.study_uid)
    answer = await listing(api, headers)
    assert whose(answer)[BETA.study_uid] == "BRACKENRIDGE, CORMAC"
    assert whose(answer)[ALPHA.study_uid] == "ALDERWOOD, BRIONY"
    page = await (await api.client.get("/ngv/viewer", headers=headers)).text()
    banner = page[page.index('<header class="banner"'):page.index("</header>")]
    assert "ALDERWOOD, BRIONY" in banner and "BRACKENRIDGE" not in banner
    studies = page[page.index('<ul id="study-list">'):page.index("</ul>")]
    assert set(re.findall(r'data-study="([^"]+)"', studies)) == {
        ALPHA.study_uid, ALPHA_PRIOR.study_uid}
    config = json.loads(page[page.index('id="viewer-config">') + 19:].split("</script>")[0])
    assert config["patient"] == "p1"
    assert [p["key"] for p in config["patients"]] == ["p1", "p2"]


async def test_the_same_patient_id_of_another_issuer_is_another_patient(api: Api) -> None:
    answer = await listing(api, await session(api, ALPHA.study_uid, GAMMA.study_uid))
    assert whose(answer) == {
        ALPHA.study_uid: "ALDERWOOD, BRIONY", GAMMA.study_uid: "GALLOWAY, DELPHINE",
        ALPHA_PRIOR.study_uid: "ALDERWOOD, BRIONY"}
    assert len(answer["patients"]) == 2


async def test_anonymized_patients_are_keys_only(api: Api) -> None:
    headers = await session(api, ALPHA.study_uid, BETA.study_uid, anonymize="true")
    response = await api.client.get("/ngv/api/studies", headers=headers)
    text = await response.text()
    answer = json.loads(text)
    assert answer["patients"] == [{"key": "p1", "received": True},
                                  {"key": "p2", "received": True}]
    assert {s["studyInstanceUID"]: s["patient"] for s in answer["studies"]}[BETA.study_uid] == "p2"
    page = await (await api.client.get("/ngv/viewer", headers=headers)).text()
    for name in NAMES:
        assert name not in text and name not in page, name
    assert "Anonymized patient 1" in page


async def test_a_study_not_in_the_index_is_not_put_under_a_known_name(api: Api) -> None:
    missing = uid(8599)
    answer = await listing(api, await session(api, ALPHA.study_uid, missing))
    keys = {s["studyInstanceUID"]: s["patient"] for s in answer["studies"]}
    assert keys[missing] != keys[ALPHA.study_uid]
    unknown = next(p for p in answer["patients"] if p["key"] == keys[missing])
    assert unknown["received"] is False and unknown["name"] == ""


def _context_row(study_uid: str, patient_id: str = "", state: str = "available"
                 ) -> dict[str, Any]:
    return {"studyInstanceUID": study_uid, "purpose": "open", "state": state, "message": None,
            "studyDate": None, "studyDescription": None, "patientID": patient_id or None}


async def test_a_study_still_arriving_goes_with_the_patient_the_calling_system_named(
        api: Api) -> None:
    """Before its first image is indexed, a study's patient is the session's row that its
    PatientID and issuer name; a PatientID of no patient of the session, or none, is a
    patient of its own, whose name is not known yet."""
    named_b, named_a, unnamed = uid(8591), uid(8592), uid(8593)
    context = {"monitor": "primary", "options": {},
               "request": {"patientID": "PID-PAT-B", "idIssuer": "NONE"},
               "studies": [_context_row(BETA.study_uid, "PID-PAT-B"),
                           _context_row(named_b, "PID-PAT-B", "pending"),
                           _context_row(named_a, "PID-PAT-A", "pending"),
                           _context_row(unnamed, "", "pending")]}
    async with api.services.sessions() as db:
        rows = await studies_of_patients_of(db, [BETA.study_uid])
        grant = Grant(1, context, frozenset(), (), {r.study_uid: r.patient_pk for r in rows})
        found = await study_listing(db, grant)
    keys = {s["studyInstanceUID"]: s["patient"] for s in found.studies}
    assert keys[named_b] == keys[BETA.study_uid]
    assert len({keys[BETA.study_uid], keys[named_a], keys[unnamed]}) == 3
    banners = {p.key: p for p in found.patients}
    assert banners[keys[named_a]] == PatientBanner(keys[named_a], patient_id="PID-PAT-A",
                                                   received=False)
    assert banners[keys[unnamed]].received is False and banners[keys[unnamed]].name == ""
