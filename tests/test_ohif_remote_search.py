"""OHIF's study list searching the source nodes too (rest/dicomweb/source_search.py), and a
study found there opened behind the waiting page (rest/ohif/found_opening.py).

One app for the module with Orthanc (C-GET) and a silent node as source nodes, and a short
source search timeout; studies on Orthanc only, in the index only, and in both. One test in
Chromium (search, open, image); the rest over HTTP with the session cookie.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from playwright.async_api import Browser
from sqlalchemy import select

from node.index.viewing_models import ContextStudy
from tests.browser import browser, screenshot
from tests.factory import StudySpec, uid
from tests.peers import OrthancProcess, silent_listener
from tests.rest_support import ROLE, Api, running_app
from tests.test_ohif_browser import first_image, open_url
from tests.viewer_data import ct_instances, write_all

__all__ = ["browser"]

BASE = {"username": "radiologist", "role": ROLE}
SEARCH_TIMEOUT = 1.0
# The index only.
LOCAL = StudySpec(study_uid=uid(8901), patient_id="PID-RS-1", patient_name="HALVORSEN^INGRID",
                  accession="ACC-RS-1", study_date="20240301", study_description="CT LOCAL",
                  rows=64, columns=64)
# The index and Orthanc, whose copy has another description.
BOTH = StudySpec(study_uid=uid(8902), patient_id="PID-RS-1", patient_name="HALVORSEN^INGRID",
                 accession="ACC-RS-2", study_date="20230301", study_description="CT BOTH",
                 rows=64, columns=64)
BOTH_ON_PACS = StudySpec(**{**BOTH.__dict__, "study_description": "CT BOTH PACS COPY"})
# Orthanc only: another patient, opened in Chromium.
REMOTE = StudySpec(study_uid=uid(8903), patient_id="PID-RS-2",
                   patient_name="FARAWAY^PERSEPHONE", accession="ACC-RS-3",
                   study_date="20220301", study_description="CT FROM PACS",
                   rows=128, columns=128)
# Orthanc only: LOCAL's PatientID under another issuer, so another patient.
OTHER_ISSUER = StudySpec(study_uid=uid(8904), patient_id="PID-RS-1", issuer="HOSP-B",
                         patient_name="OTHERSON^KARL", accession="ACC-RS-4",
                         study_date="20210301", study_description="CT OTHER ISSUER",
                         rows=64, columns=64)
PACS_ONLY = (REMOTE, OTHER_ISSUER)
STUDIES = "/dicom-web/studies"
ACCEPT = {"Accept": "application/dicom+json"}
# Tags of the QIDO-RS answers.
STUDY_UID, DESCRIPTION, AVAILABILITY, RETRIEVE_AE = "0020000D", "00081030", "00080056", "00080054"
ISSUER, NAME = "00100021", "00100010"


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    with silent_listener() as port:
        yield port


@pytest.fixture(scope="module")
async def api(orthanc: OrthancProcess, silent_port: int,
              tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("ohif-remote-search")
    for spec in (BOTH_ON_PACS, *PACS_ONLY):
        for path in write_all(folder / "pacs" / spec.study_uid, ct_instances(spec, 3)):
            orthanc.upload(path)
    sources = [{"ae_title": orthanc.ae_title, "host": "127.0.0.1", "port": orthanc.dicom_port,
                "retrieve": "C-GET"},
               {"ae_title": "SILENT", "host": "127.0.0.1", "port": silent_port}]
    async with running_app(folder, source_nodes=sources,
                           dicomweb={"source_search_timeout": SEARCH_TIMEOUT}) as api:
        for spec in (LOCAL, BOTH):
            for path in write_all(folder / "local" / spec.study_uid, ct_instances(spec, 2)):
                await api.services.ingestor.ingest_copy(path, "import")
        yield api
        await api.retrievals_done()


async def search(api: Api, headers: dict[str, str], params: dict[str, str]
                 ) -> tuple[dict[str, dict[str, Any]], str, float]:
    """QIDO-RS studies as OHIF's study list asks: (results by study UID, Warning, seconds)."""
    started = time.monotonic()
    response = await api.client.get(STUDIES, params={"limit": "101", "offset": "0", **params},
                                    headers={**headers, **ACCEPT})
    elapsed = time.monotonic() - started
    assert response.status in (200, 204), await response.text()
    body = await response.json(content_type=None) if response.status == 200 else []
    return ({r[STUDY_UID]["Value"][0]: r for r in body}, response.headers.get("Warning", ""),
            elapsed)


def value(result: dict[str, Any], tag: str) -> Any:
    return result.get(tag, {}).get("Value", [None])[0]


async def searching(api: Api, **params: str) -> dict[str, str]:
    return await api.session_headers({**BASE, "studyUID": LOCAL.study_uid,
                                      "hideSearch": "false", **params})


async def context_rows(api: Api, study_uid: str) -> list[tuple[str, str, str]]:
    async with api.services.sessions() as session:
        rows = await session.execute(select(
            ContextStudy.purpose, ContextStudy.state, ContextStudy.source).where(
                ContextStudy.study_uid == study_uid))
        return [(purpose, state, source) for purpose, state, source in rows.all()]


async def test_the_study_list_finds_the_sources_studies_beside_the_local_ones(api: Api) -> None:
    found, warning, _ = await search(api, await searching(api), {"00100020": "*PID-RS-1*"})
    assert set(found) == {LOCAL.study_uid, BOTH.study_uid, OTHER_ISSUER.study_uid}
    # The index's copy wins; the source's study is nearline, from Orthanc, under its issuer.
    assert value(found[BOTH.study_uid], DESCRIPTION) == "CT BOTH"
    assert value(found[BOTH.study_uid], AVAILABILITY) == "ONLINE"
    remote = found[OTHER_ISSUER.study_uid]
    assert value(remote, AVAILABILITY) == "NEARLINE"
    assert value(remote, RETRIEVE_AE) == "ORTHANC"
    assert value(remote, ISSUER) == "HOSP-B"
    assert value(remote, NAME) == {"Alphabetic": "OTHERSON^KARL"}
    assert "SILENT" in warning


async def test_a_silent_source_is_named_in_a_warning_and_the_local_matches_come_in_time(
        api: Api) -> None:
    found, warning, elapsed = await search(api, await searching(api),
                                           {"PatientName": "HALVORSEN*"})
    assert set(found) == {LOCAL.study_uid, BOTH.study_uid}
    assert warning == '299 VIEWNODE "Source node SILENT did not answer in time"'

    assert elapsed < SEARCH_TIMEOUT + 1.5


async def test_a_session_without_search_gets_nothing_from_the_sources(api: Api) -> None:
    before = await context_rows(api, REMOTE.study_uid)
    for params in ({}, {"hideSearch": "false", "anonymize": "true"}):
        headers = await api.session_headers({**BASE, "studyUID": LOCAL.study_uid, **params})
        if params.get("anonymize"):
            # An anonymized session may not match on the patient at all (docs/API.md).
            refused = await api.client.get(STUDIES, params={"00100020": "*PID-RS*"},
                                           headers={**headers, **ACCEPT})
            assert refused.status == 400, await refused.text()
            assert (await refused.json())["field"] == "00100020"
        else:
            found, warning, elapsed = await search(api, headers, {"00100020": "*PID-RS*"})
            assert set(found) <= {LOCAL.study_uid, BOTH.study_uid}, params
            assert warning == "" and elapsed < SEARCH_TIMEOUT, params
        # Naming a source's study in the viewer's URL neither adds nor retrieves it.
        page = await api.client.get(f"/viewer/viewer?StudyInstanceUIDs={REMOTE.study_uid}",
                                    headers=headers)
        assert page.status == 200 and "being retrieved" not in await page.text()
    assert await context_rows(api, REMOTE.study_uid) == before


@pytest.mark.parametrize("params", [
    {"00100020": "PID-RS-1"},  # the study browser: the window's patient, by exact PatientID
    {"StudyInstanceUID": LOCAL.study_uid},  # the study a window opens, in the index
    {"PatientName": "*"},  # everything: the whole archive is not listed
    {"00100020": "*PID-RS-1*", "offset": "1"},  # a later page: a source node has no paging
], ids=["patient", "opened-study", "everything", "later-page"])
async def test_queries_the_sources_cannot_add_to_stay_local(
        api: Api, params: dict[str, str]) -> None:
    found, warning, elapsed = await search(api, await searching(api), params)
    assert set(found) <= {LOCAL.study_uid, BOTH.study_uid}
    assert warning == "" and elapsed < SEARCH_TIMEOUT


async def test_a_found_study_opens_retrieved_from_the_source_with_its_own_patient(
        api: Api) -> None:
    headers = await searching(api)
    page = await api.client.get(
        f"/viewer/viewer?StudyInstanceUIDs={OTHER_ISSUER.study_uid}", headers=headers)
    assert page.status == 200
    await api.retrievals_done()
    assert await context_rows(api, OTHER_ISSUER.study_uid) == [("search", "available", "ORTHANC")]
    found, _, _ = await search(api, headers, {"StudyInstanceUID": OTHER_ISSUER.study_uid})
    study = found[OTHER_ISSUER.study_uid]
    # Now the index's: online, and still the other issuer's patient.
    assert value(study, AVAILABILITY) == "ONLINE"
    assert value(study, ISSUER) == "HOSP-B" and value(study, NAME) == {
        "Alphabetic": "OTHERSON^KARL"}


async def test_the_study_list_opens_a_study_only_the_source_holds(
        api: Api, browser: Browser) -> None:
    token = await api.token({**BASE, "studyUID": LOCAL.study_uid, "hideSearch": "false"})
    opened = await open_url(api, browser, f"/ngv?q={token}", keep_bodies=True)
    await first_image(opened)
    page = opened.page
    await page.goto(f"{opened.origin}/viewer/?mrn={REMOTE.patient_id}")
    await page.get_by_text(REMOTE.study_description).click()
    await screenshot(page, "ohif-study-list-source-node")
    await page.get_by_role("button", name="Basic Viewer").click()
    await page.wait_for_url(f"**/viewer/viewer?StudyInstanceUIDs={REMOTE.study_uid}*")
    stats = await first_image(opened)
    assert stats["std"] > 10, stats
    # The page was first the waiting page (the retrieval starts as the page is answered).
    assert any("being retrieved" in body for body in opened.bodies)
    text = await page.text_content("body") or ""
    assert "FARAWAY, PERSEPHONE" in text and "HALVORSEN" not in text
    assert await context_rows(api, REMOTE.study_uid) == [("search", "available", "ORTHANC")]
    await screenshot(page, "ohif-source-study-opened")
    assert opened.foreign_requests() == []
    await opened.close()
