"""A patient is (PatientID, IssuerOfPatientID), and an empty PatientID joins nobody.

Each session below is opened several times, because a grant that matched patients loosely
could depend on which rows a query met first; every one of them must hold.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from node.index.dicom_models import Patient, Study
from tests.factory import StudySpec, uid
from tests.rest_support import ROLE, Api, running_app

SESSIONS = 5

NO_ISSUER = StudySpec(study_uid=uid(9401), patient_id="PIDA", patient_name="FIRST^HOSPITAL",
                      study_date="20240101", rows=16, columns=16)
NO_ISSUER_PRIOR = StudySpec(study_uid=uid(9402), patient_id="PIDA",
                            patient_name="FIRST^HOSPITAL", study_date="20200101", rows=16,
                            columns=16)
OTHER_HOSPITAL = StudySpec(study_uid=uid(9403), patient_id="PIDA", issuer="OTHERHOSP",
                           patient_name="SECOND^HOSPITAL", study_date="20230101", rows=16,
                           columns=16)
WITHOUT_ID = [StudySpec(study_uid=uid(9410 + i), patient_id="", patient_name=f"UNKNOWN^{i}",
                        study_date=f"2024010{i + 1}", rows=16, columns=16) for i in range(3)]


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with running_app(tmp_path_factory.mktemp("patient-identity")) as api:
        for spec in (NO_ISSUER, NO_ISSUER_PRIOR, OTHER_HOSPITAL, *WITHOUT_ID):
            await api.ingest(spec)
        yield api


async def sessions_for(api: Api, study_uid: str) -> list[dict[str, str]]:
    headers = []
    for _ in range(SESSIONS):
        _, cookie = await api.redeem(await api.token(
            {"username": "u", "role": ROLE, "studyUID": study_uid}))
        assert cookie is not None
        headers.append({"Cookie": f"ngv_session={cookie}"})
    return headers


async def listed(api: Api, headers: dict[str, str]) -> list[str]:
    """The studies the session's QIDO-RS lists (OHIF's study browser), newest first."""
    response = await api.client.get("/dicom-web/studies", headers=headers)
    assert response.status == 200, await response.text()
    return [study["0020000D"]["Value"][0] for study in await response.json()]


async def readable(api: Api, headers: dict[str, str], study_uid: str) -> bool:
    response = await api.client.get(f"/dicom-web/studies/{study_uid}/series", headers=headers)
    assert response.status in (200, 403), await response.text()
    return response.status == 200


async def test_the_same_patient_id_of_another_issuer_is_another_patient(api: Api) -> None:
    for headers in await sessions_for(api, NO_ISSUER.study_uid):
        assert await listed(api, headers) == [NO_ISSUER.study_uid, NO_ISSUER_PRIOR.study_uid]
        assert await readable(api, headers, NO_ISSUER_PRIOR.study_uid)
        assert not await readable(api, headers, OTHER_HOSPITAL.study_uid)
        iso = await api.client.get(f"/ngv/api/studies/{OTHER_HOSPITAL.study_uid}/iso",
                                   headers=headers)
        assert iso.status == 403
    for headers in await sessions_for(api, OTHER_HOSPITAL.study_uid):
        assert await listed(api, headers) == [OTHER_HOSPITAL.study_uid]
        assert not await readable(api, headers, NO_ISSUER.study_uid)


async def test_an_empty_patient_id_joins_no_studies(api: Api) -> None:
    first, *others = WITHOUT_ID
    for headers in await sessions_for(api, first.study_uid):
        assert await listed(api, headers) == [first.study_uid]
        for other in others:
            assert not await readable(api, headers, other.study_uid)


async def test_each_study_without_patient_id_has_a_patient_row_of_its_own(api: Api) -> None:
    async with api.services.sessions() as session:
        rows = (await session.execute(
            select(Study.study_uid, Patient.id, Patient.name)
            .join(Patient, Study.patient_pk == Patient.id)
            .where(Study.study_uid.in_([s.study_uid for s in WITHOUT_ID])))).all()
    assert len({row[1] for row in rows}) == len(WITHOUT_ID)
    names = {row[0]: row[2] for row in rows}
    assert names == {s.study_uid: s.patient_name for s in WITHOUT_ID}


async def test_a_patient_id_of_several_issuers_needs_the_issuer(api: Api) -> None:
    query = {"username": "u", "role": ROLE, "patientID": "PIDA"}
    response = await api.get("/ngv/obscurl", query)
    assert response.status == 409
    assert "idIssuer" in (await response.json())["error"]
    context = await api.context(await api.token({**query, "idIssuer": "OTHERHOSP"}))
    assert [s["studyInstanceUID"] for s in context["studies"]] == [OTHER_HOSPITAL.study_uid]


async def studies_named(api: Api, headers: dict[str, str], params: dict[str, str]
                        ) -> tuple[list[str], str]:
    """QIDO-RS /studies as OHIF's study browser asks it; the study UIDs and any Warning."""
    response = await api.client.get("/dicom-web/studies", params=params,
                                    headers={**headers, "Accept": "application/dicom+json"})
    assert response.status in (200, 204), await response.text()
    found = await response.json() if response.status == 200 else []
    return sorted(s["0020000D"]["Value"][0] for s in found), response.headers.get("Warning", "")


async def test_a_shared_patient_id_lists_only_the_sessions_own_patient(api: Api) -> None:
    """OHIF's study browser lists "the patient's studies" as /studies?00100020=<PatientID>,
    without the issuer: another hospital's PIDA must never appear beside this patient, also in
    a session whose role may search every study."""
    pida = {"00100020": "PIDA"}
    for hide_search in ("true", "false"):
        own = [NO_ISSUER.study_uid, NO_ISSUER_PRIOR.study_uid]
        headers = await api.session_headers({"username": "u", "role": ROLE,
                                             "hideSearch": hide_search,
                                             "studyUID": NO_ISSUER.study_uid})
        assert (await studies_named(api, headers, pida))[0] == sorted(own)
        headers = await api.session_headers({"username": "u", "role": ROLE,
                                             "hideSearch": hide_search,
                                             "studyUID": OTHER_HOSPITAL.study_uid})
        assert (await studies_named(api, headers, pida))[0] == [OTHER_HOSPITAL.study_uid]


async def test_a_shared_patient_id_outside_the_grant_needs_the_issuer(api: Api) -> None:
    """A searching session viewing neither PIDA: the bare PatientID names two patients, so it
    answers none of them (with a Warning naming IssuerOfPatientID); the issuer names one, and
    a wildcard search lists both, each under its own name."""
    headers = await api.session_headers({"username": "u", "role": ROLE, "hideSearch": "false",
                                         "studyUID": WITHOUT_ID[0].study_uid})
    found, warning = await studies_named(api, headers, {"00100020": "PIDA"})
    assert found == [] and "IssuerOfPatientID" in warning
    found, _ = await studies_named(api, headers, {"00100020": "PIDA",
                                                  "IssuerOfPatientID": "OTHERHOSP"})
    assert found == [OTHER_HOSPITAL.study_uid]
    found, _ = await studies_named(api, headers, {"00100020": "*PIDA*"})
    assert found == sorted([NO_ISSUER.study_uid, NO_ISSUER_PRIOR.study_uid,
                            OTHER_HOSPITAL.study_uid])
    everything = await api.get("/dicom-web/studies", {"00100020": "PIDA"})
    assert len(await everything.json()) == 3


async def test_a_study_of_another_patient_than_the_one_named_is_refused(api: Api) -> None:
    """patientID with a study that is another patient's is the caller's wrong-patient error:
    nothing opens (a reader would see another patient's images where this one's are expected),
    through every field that names studies and both token APIs."""
    third = StudySpec(study_uid=uid(9404), patient_id="PIDB", patient_name="THIRD^PATIENT",
                      study_date="20240301", rows=16, columns=16)
    await api.ingest(third)
    base = {"username": "u", "role": ROLE, "patientID": "PIDB"}
    for field in ("studyUID", "historyList", "fullPreloadStudy"):
        extra = {} if field == "studyUID" else {"studyUID": third.study_uid}
        response = await api.get("/ngv/obscurl", {**base, **extra, field: NO_ISSUER.study_uid})
        assert response.status == 409, (field, await response.text())
        error = (await response.json())["error"]
        assert error.startswith(f"{field}:") and NO_ISSUER.study_uid in error
        assert "FIRST" not in error and "PIDA" not in error
    monitors = await api.get("/ngv/multimonitor-api", {**base, "numberOfMonitors": "1",
                                                       "studyIntanceUID": NO_ISSUER.study_uid})
    assert monitors.status == 409
    # The same PatientID, named with the other issuer: another patient too.
    named = await api.get("/ngv/obscurl", {"username": "u", "role": ROLE, "patientID": "PIDA",
                                           "idIssuer": "OTHERHOSP",
                                           "studyUID": NO_ISSUER.study_uid})
    assert named.status == 409
    # The patient's own studies open as before.
    context = await api.context(await api.token({**base, "studyUID": third.study_uid}))
    assert [s["studyInstanceUID"] for s in context["studies"]] == [third.study_uid]
