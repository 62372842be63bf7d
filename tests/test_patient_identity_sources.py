"""A source node's copy of a study never puts the index's copy under another patient.

Orthanc (the PACS) holds study SHARED_UID for patient SRC-B, the node holds the same Study
Instance UID for patient SRC-A (the PACS corrected the patient after the node had stored it,
say). The index's copy is what the node shows and serves, so a token for SRC-B must not grant
it as SRC-B's history, and an order (accession number) must not open it as SRC-B's study.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.factory import StudySpec, uid
from tests.peers import OrthancProcess
from tests.rest_support import ROLE, Api, running_app
from tests.viewer_data import ct_instances, write_all

SHARED_UID = uid(12201)
LOCAL_A = StudySpec(study_uid=SHARED_UID, patient_id="SRC-A", patient_name="LOCALA^ANNA",
                    accession="SRC-ACC-A", study_date="20240101", rows=16, columns=16)
PACS_B = StudySpec(study_uid=SHARED_UID, patient_id="SRC-B", patient_name="REMOTEB^BERT",
                   accession="SRC-ACC-B", study_date="20240101", rows=16, columns=16)
PACS_B_PRIOR = StudySpec(study_uid=uid(12202), patient_id="SRC-B", patient_name="REMOTEB^BERT",
                         accession="SRC-ACC-B2", study_date="20200101", rows=16, columns=16)
BASE = {"username": "u", "role": ROLE}


@pytest.fixture(scope="module")
async def api(orthanc: OrthancProcess, tmp_path_factory: pytest.TempPathFactory
              ) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("identity-sources")
    for spec in (PACS_B, PACS_B_PRIOR):
        for path in write_all(folder / "pacs" / spec.study_uid, ct_instances(spec, 1)):
            orthanc.upload(path)
    sources = [{"ae_title": orthanc.ae_title, "host": "127.0.0.1", "port": orthanc.dicom_port,
                "retrieve": "C-GET"}]
    async with running_app(folder, source_nodes=sources) as api:
        for path in write_all(folder / "local", ct_instances(LOCAL_A, 1)):
            await api.services.ingestor.ingest_copy(path, "import")
        yield api
        await api.retrievals_done()


def context_uids(context: dict[str, Any]) -> list[str]:
    return [s["studyInstanceUID"] for s in context["studies"]]


async def readable(api: Api, headers: dict[str, str], study_uid: str) -> bool:
    response = await api.client.get(f"/dicom-web/studies/{study_uid}/series", headers=headers)
    assert response.status in (200, 403), await response.text()
    return response.status == 200


async def test_a_patients_history_leaves_out_a_study_the_node_holds_for_another(
        api: Api) -> None:
    query = {**BASE, "patientID": "SRC-B", "sourceNodes": "ORTHANC"}
    context = await api.context(await api.token(query))
    assert context_uids(context) == [PACS_B_PRIOR.study_uid]
    headers = await api.session_headers(query)
    assert not await readable(api, headers, SHARED_UID)
    listed = await api.client.get("/dicom-web/studies", headers=headers)
    assert "LOCALA" not in await listed.text()


async def test_an_order_from_the_source_does_not_open_another_patients_local_study(
        api: Api) -> None:
    """The PACS says SRC-ACC-B is SHARED_UID; the node's SHARED_UID is SRC-A's study with
    another accession number: nothing of SRC-A opens for that order."""
    query = {**BASE, "accNum": "SRC-ACC-B", "sourceNodes": "ORTHANC"}
    context = await api.context(await api.token(query))
    assert SHARED_UID not in context_uids(context)
    headers = await api.session_headers(query)
    assert not await readable(api, headers, SHARED_UID)


async def test_a_named_study_arriving_as_another_patients_is_not_granted(api: Api) -> None:
    """A token for SRC-C names a study the node holds nowhere yet (historyList,
    fullPreloadStudy); it arrives later as SRC-D's (a modality sends it): the session for
    SRC-C must not read it, nor the rest of SRC-D's studies through it."""
    own = StudySpec(study_uid=uid(12211), patient_id="SRC-C", patient_name="OWNC^CARLA",
                    study_date="20240101", rows=16, columns=16)
    late = StudySpec(study_uid=uid(12212), patient_id="SRC-D", patient_name="LATED^DORA",
                     study_date="20230101", rows=16, columns=16)
    late_prior = StudySpec(study_uid=uid(12213), patient_id="SRC-D",
                           patient_name="LATED^DORA", study_date="20200101", rows=16,
                           columns=16)
    await api.ingest(own)
    tokens = [await api.token({**BASE, "patientID": "SRC-C", "studyUID": own.study_uid,
                               field: late.study_uid, **extra})
              for field, extra in (("historyList", {}),
                                   ("fullPreloadStudy", {"idIssuer": "NONE"}))]
    await api.ingest(late)
    await api.ingest(late_prior)
    for token in tokens:
        _, cookie = await api.redeem(token)
        headers = {"Cookie": f"ngv_session={cookie}"}
        assert await readable(api, headers, own.study_uid)
        assert not await readable(api, headers, late.study_uid)
        assert not await readable(api, headers, late_prior.study_uid)
        listed = await api.client.get("/dicom-web/studies", headers=headers)
        assert "LATED" not in await listed.text()
        context = await api.client.get("/ngv/api/context", headers=headers)
        studies = (await context.json())["studies"]
        assert [s["studyInstanceUID"] for s in studies] == [own.study_uid]


async def test_a_named_study_arriving_while_the_session_reads_is_never_shown(api: Api) -> None:
    """The session reads before the named study arrives, so its grant is cached (for a few
    seconds) with that study in it; the study then arrives as another patient's: at once,
    neither a read of it nor a search shows it."""
    own = StudySpec(study_uid=uid(12221), patient_id="SRC-E", patient_name="OWNE^EMMA",
                    study_date="20240101", rows=16, columns=16)
    late = StudySpec(study_uid=uid(12222), patient_id="SRC-F", patient_name="LATEF^FRIDA",
                     study_date="20230101", rows=16, columns=16)
    await api.ingest(own)
    token = await api.token({**BASE, "patientID": "SRC-E", "studyUID": own.study_uid,
                             "historyList": late.study_uid})
    _, cookie = await api.redeem(token)
    headers = {"Cookie": f"ngv_session={cookie}"}
    assert await readable(api, headers, own.study_uid)
    # Back in time: the grant just cached stays within its seconds however slow the machine.
    api.clock.advance(-60)
    try:
        await api.ingest(late)
        assert not await readable(api, headers, late.study_uid)
        listed = await api.client.get("/dicom-web/studies", headers=headers)
        assert listed.status == 200
        assert "LATEF" not in await listed.text()
        assert own.study_uid in await listed.text()
    finally:
        api.clock.advance(60)
