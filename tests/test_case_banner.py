"""The slide viewer's banner names the case's patient, never another: the index's row of the
study the context opens, the POST JSON's patient of slide files, the row the calling system
named for a study still arriving, or nobody's name (rest/viewer/case_banner.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from node.index.patient_queries import studies_of_patients_of
from rest.viewer.case_banner import PatientBanner, case_banner
from rest.viewer.grants import Grant
from tests.factory import StudySpec, uid
from tests.rest_support import Api, running_app
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
    folder = tmp_path_factory.mktemp("case-banner")
    async with running_app(folder) as api:
        files = []
        for spec in (ALPHA, ALPHA_PRIOR, BETA, BETA_PRIOR, GAMMA):
            files += write_all(folder / spec.study_uid, ct_instances(spec, 1))
        for path in files:
            await api.services.ingestor.ingest_copy(path, "import")
        yield api


def context_row(study_uid: str, patient_id: str = "", state: str = "available",
                purpose: str = "open") -> dict[str, Any]:
    return {"studyInstanceUID": study_uid, "purpose": purpose, "state": state,
            "message": None, "studyDate": None, "studyDescription": None,
            "patientID": patient_id or None}


async def banner_of(api: Api, rows: list[dict[str, Any]], anonymize: bool = False,
                    request: dict[str, Any] | None = None, monitor: str = "primary"
                    ) -> PatientBanner:
    """The banner of a session whose context has these study rows (its grant made as
    GrantCache makes it: the studies' patient rows from the index)."""
    context = {"monitor": monitor, "options": {"anonymize": anonymize},
               "request": request or {}, "studies": rows}
    async with api.services.sessions() as db:
        found = await studies_of_patients_of(db, [r["studyInstanceUID"] for r in rows])
        grant = Grant(1, context, frozenset(), (), {r.study_uid: r.patient_pk for r in found})
        return await case_banner(db, grant)


async def test_the_banner_names_the_opened_studys_patient(api: Api) -> None:
    banner = await banner_of(api, [context_row(ALPHA.study_uid)])
    assert banner == PatientBanner("ALDERWOOD, BRIONY", "PID-PAT-A", "19610203", "F")
    assert banner.as_json(anonymize=False) == {
        "name": "ALDERWOOD, BRIONY", "patientID": "PID-PAT-A", "birthDate": "19610203",
        "sex": "F", "received": True}


async def test_a_context_of_two_patients_shows_the_first_opened_ones(api: Api) -> None:
    rows = [context_row(BETA.study_uid, purpose="prior"), context_row(ALPHA.study_uid),
            context_row(BETA_PRIOR.study_uid)]
    assert (await banner_of(api, rows)).name == "ALDERWOOD, BRIONY"
    # A second monitor shows the priors: the first of them.
    assert (await banner_of(api, rows, monitor="secondary")).name == "BRACKENRIDGE, CORMAC"


async def test_the_same_patient_id_of_another_issuer_is_another_patient(api: Api) -> None:
    banner = await banner_of(api, [context_row(GAMMA.study_uid), context_row(ALPHA.study_uid)])
    assert banner.name == "GALLOWAY, DELPHINE"


async def test_an_anonymized_banner_names_no_one(api: Api) -> None:
    banner = await banner_of(api, [context_row(ALPHA.study_uid)], anonymize=True)
    assert banner == PatientBanner()
    text = str(banner.as_json(anonymize=True))
    for name in NAMES:
        assert name not in text, name


async def test_a_study_not_in_the_index_is_not_put_under_a_known_name(api: Api) -> None:
    banner = await banner_of(api, [context_row(uid(8599)), context_row(ALPHA.study_uid)])
    assert banner == PatientBanner(received=False)


async def test_a_study_still_arriving_goes_with_the_patient_the_calling_system_named(
        api: Api) -> None:
    """Before its first image is indexed, a study's patient is the session's row that its
    PatientID and issuer name; a PatientID of no patient of the session, or none, is a
    patient whose name is not known yet."""
    named_b, named_a, unnamed = uid(8591), uid(8592), uid(8593)
    request = {"patientID": "PID-PAT-B", "idIssuer": "NONE"}
    beta = context_row(BETA.study_uid, "PID-PAT-B", purpose="history")
    arriving = await banner_of(api, [context_row(named_b, "PID-PAT-B", "pending"), beta],
                               request=request)
    assert arriving.name == "BRACKENRIDGE, CORMAC" and arriving.received
    other = await banner_of(api, [context_row(named_a, "PID-PAT-A", "pending"), beta],
                            request=request)
    assert other == PatientBanner(patient_id="PID-PAT-A", received=False)
    nobody = await banner_of(api, [context_row(unnamed, "", "pending"), beta],
                             request=request)
    assert nobody == PatientBanner(received=False)
