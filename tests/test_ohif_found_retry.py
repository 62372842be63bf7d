"""A failed retrieval of a study a searching session found on a source node: the waiting page
says why and how far it got, opening the study again retrieves it again, once however many
tabs and instances ask (node/viewing/retrievals.py, rest/ohif/waiting.py).

A private Orthanc as the source (C-MOVE), stopped and started by the test that needs it down;
each test sets whether this node is among its modalities (without it, Orthanc refuses the
C-MOVE with 0xA801). Two instances of the node on one database, as two workers. Over HTTP with
the session cookie, one test in Chromium (the waiting page's error and its Retry button).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from playwright.async_api import Browser
from pydicom.dataset import Dataset

from node.config import config_from_dict
from tests.browser import browser, screenshot
from tests.factory import StudySpec, uid
from tests.peers import OrthancProcess, free_port
from tests.rest_support import ROLE, Api, config_dict, running_app
from tests.test_ohif_browser import first_image, open_url
from tests.viewer_data import ct_instances, write_all

__all__ = ["browser"]

ARCHIVE = "ARCHIVE"
NODE = "VIEWNODE"
BASE = {"username": "radiologist", "role": ROLE}
STATE = "/viewer/retrieval-state"
WAITING_TEXT = "being retrieved"


def spec(number: int, name: str, rows: int = 64) -> StudySpec:
    return StudySpec(study_uid=uid(8950 + number), patient_id=f"PID-FR-{number}",
                     patient_name=name, accession=f"ACC-FR-{number}", study_date="20240301",
                     study_description=f"CT RETRY {number}", rows=rows, columns=rows)


LOCAL = spec(0, "LOCALSON^LIV")
REFUSED = spec(1, "REFUSEDOTTIR^RUNA")
DOWN = spec(2, "DOWNING^DAG")
TWO_TABS = spec(3, "TABBERT^TOVE")
PARTIAL = spec(4, "PARTLOW^PIA")
PARTIAL_AGAIN = spec(5, "PARTRIDGE^PER")
IN_BROWSER = spec(6, "BROWNE^BO", rows=128)
PARTIAL_TOKEN = spec(7, "PARTON^PAL")
PARTIAL_GONE = spec(8, "PARTWAY^PIPPA")


def partial_study(study: StudySpec) -> list[Dataset]:
    """Three instances, the first an image without pixel data: Orthanc keeps it, the node
    refuses it (a truncated file), and Orthanc ends its C-MOVE there. Orthanc sends a study's
    instances last stored first, so the bad one goes last."""
    datasets = ct_instances(study, 3)
    del datasets[0].PixelData
    return datasets


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancProcess]:
    folder = tmp_path_factory.mktemp("found-retry-archive")
    orthanc = OrthancProcess(folder / "orthanc", ae_title=ARCHIVE).start()
    try:
        studies = [ct_instances(s, 3) for s in (REFUSED, DOWN, TWO_TABS, IN_BROWSER)]
        partial = [partial_study(s) for s in (PARTIAL, PARTIAL_AGAIN, PARTIAL_TOKEN,
                                                    PARTIAL_GONE)]
        for index, datasets in enumerate([*studies, *partial]):
            for path in write_all(folder / "files" / str(index), datasets):
                orthanc.upload(path)
        yield orthanc
    finally:
        orthanc.stop()


@pytest.fixture(scope="module")
async def instances(archive: OrthancProcess, tmp_path_factory: pytest.TempPathFactory
                    ) -> AsyncIterator[list[Api]]:
    """Two instances on one database and storage, sharing the DICOM port as workers do."""
    folder = tmp_path_factory.mktemp("found-retry")
    sources = [{"ae_title": ARCHIVE, "host": "127.0.0.1", "port": archive.dicom_port,
                "retrieve": "C-MOVE"}]
    dicom_port = free_port()
    configs = [config_from_dict(config_dict(sources, dicom={"port": dicom_port},
                                            http={"port": free_port()},
                                            jobs={"poll_seconds": 0.2}), base_dir=folder)
               for _ in range(2)]
    async with running_app(folder, config=configs[0]) as first, \
            running_app(folder, config=configs[1]) as second:
        for path in write_all(folder / "local", ct_instances(LOCAL, 2)):
            await first.services.ingestor.ingest_copy(path, "import")
        yield [first, second]
        for api in (first, second):
            await api.retrievals_done()


def knows_the_node(archive: OrthancProcess, api: Api) -> None:
    archive.set_modality(NODE, "127.0.0.1", api.services.config.dicom.port)


async def searching(api: Api) -> dict[str, str]:
    """A fresh session that may search (so a study the source holds may be opened)."""
    return await api.session_headers({**BASE, "studyUID": LOCAL.study_uid,
                                      "hideSearch": "false"})


async def open_study(api: Api, headers: dict[str, str], study_uid: str) -> str:
    """OHIF's page for the study, as the study list opens it: its text."""
    page = await api.client.get(f"/viewer/viewer?StudyInstanceUIDs={study_uid}",
                                headers=headers)
    assert page.status == 200
    return await page.text()


async def retrieval_state(api: Api, headers: dict[str, str], study_uid: str
                          ) -> dict[str, Any]:
    response = await api.client.get(STATE, params={"StudyInstanceUIDs": study_uid},
                                    headers=headers)
    assert response.status == 200, await response.text()
    state: dict[str, Any] = await response.json()
    return state


async def state_when(api: Api, headers: dict[str, str], study_uid: str,
                     condition: Callable[[dict[str, Any]], bool], seconds: float = 60.0
                     ) -> dict[str, Any]:
    """Ask the waiting page's question until `condition` holds of the answer."""
    deadline = time.monotonic() + seconds
    while True:
        state = await retrieval_state(api, headers, study_uid)
        if condition(state):
            return state
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.05)


async def failed_in_new_session(api: Api, study_uid: str
                                ) -> tuple[dict[str, str], dict[str, Any]]:
    """A new searching session opens the study; once its retrieval failed: (the session's
    headers, the study as the waiting page's question answers it)."""
    headers = await searching(api)
    assert WAITING_TEXT in await open_study(api, headers, study_uid)
    state = await state_when(api, headers, study_uid, failed)
    assert state["waiting"] == 0
    [study] = state["studies"]
    return headers, study


def progress(study: dict[str, Any]) -> tuple[int, int | None]:
    return study["received"], study["announced"]


def failed(state: dict[str, Any]) -> bool:
    return any(study["state"] == "failed" for study in state["studies"])


def arrived(state: dict[str, Any]) -> bool:
    return state == {"waiting": 0, "studies": []}


async def context_study(api: Api, headers: dict[str, str], study_uid: str) -> dict[str, Any]:
    response = await api.client.get("/ngv/api/context", headers=headers)
    assert response.status == 200
    studies = [s for s in (await response.json())["studies"]
               if s["studyInstanceUID"] == study_uid]
    assert len(studies) == 1, studies
    return studies[0]


async def fails_again_with_two_of_three(api: Api, headers: dict[str, str], study_uid: str
                                        ) -> None:
    """Opened again, a partial study is the waiting page (a retry), never the viewer on two of
    its three instances; the retrieval fails again with the same progress."""
    assert WAITING_TEXT in await open_study(api, headers, study_uid)
    state = await state_when(api, headers, study_uid, failed)
    assert progress(state["studies"][0]) == (2, 3)


async def test_a_refused_retrieval_names_its_cause_and_opening_the_study_again_retrieves_it(
        archive: OrthancProcess, instances: list[Api]) -> None:
    api = instances[0]
    archive.remove_modality(NODE)
    headers, study = await failed_in_new_session(api, REFUSED.study_uid)
    assert study["source"] == ARCHIVE
    assert study["message"] == (
        f"{ARCHIVE}: C-MOVE failed with status 0xC000 (Failure) with no instance reported sent: is "
        f"{NODE} (port {api.services.config.dicom.port}) among {ARCHIVE}'s C-MOVE destinations?")
    assert REFUSED.patient_name not in str(study)

    knows_the_node(archive, api)
    # Opening it again is not OHIF on a study that is not here: it is retrieved again.
    assert WAITING_TEXT in await open_study(api, headers, REFUSED.study_uid)
    await state_when(api, headers, REFUSED.study_uid, arrived)
    assert WAITING_TEXT not in await open_study(api, headers, REFUSED.study_uid)
    study = await context_study(api, headers, REFUSED.study_uid)
    assert (study["state"], study["message"]) == ("available", None)
    assert (study["instancesReceived"], study["instancesAnnounced"]) == (3, 3)


async def test_a_source_that_is_down_is_named_when_the_study_is_opened_again(
        archive: OrthancProcess, instances: list[Api]) -> None:
    api = instances[1]
    archive.remove_modality(NODE)
    headers, _ = await failed_in_new_session(api, DOWN.study_uid)
    archive.stop()
    try:
        assert WAITING_TEXT in await open_study(api, headers, DOWN.study_uid)
        state = await state_when(api, headers, DOWN.study_uid, lambda s: failed(s) and (
            "refused or unreachable" in s["studies"][0]["message"]))
    finally:
        archive.start()
    [study] = state["studies"]
    assert study["message"] == (f"{ARCHIVE}: connection to 127.0.0.1:{archive.dicom_port} "
                                "refused or unreachable")


async def test_a_study_opened_again_in_several_tabs_and_sessions_is_retrieved_once(
        archive: OrthancProcess, instances: list[Api], caplog: pytest.LogCaptureFixture) -> None:
    first, second = instances
    archive.remove_modality(NODE)
    reader, _ = await failed_in_new_session(first, TWO_TABS.study_uid)
    other_reader, _ = await failed_in_new_session(second, TWO_TABS.study_uid)
    knows_the_node(archive, first)
    caplog.set_level(logging.INFO, logger="node.dimse.scu")

    # Two tabs of one reader, on two instances, and another reader's tab, all at once.
    pages = await asyncio.gather(open_study(first, reader, TWO_TABS.study_uid),
                                 open_study(second, reader, TWO_TABS.study_uid),
                                 open_study(second, other_reader, TWO_TABS.study_uid))
    assert all(WAITING_TEXT in page for page in pages)
    for api, headers in ((first, reader), (second, other_reader)):
        await state_when(api, headers, TWO_TABS.study_uid, arrived)
    for api in instances:
        await api.retrievals_done()
    moves = [r for r in caplog.records
             if r.getMessage().startswith(f"C-MOVE of study {TWO_TABS.study_uid} from")]
    assert len(moves) == 1, [r.getMessage() for r in moves]


async def test_a_partial_retrieval_is_not_shown_as_complete(
        archive: OrthancProcess, instances: list[Api]) -> None:
    api = instances[0]
    knows_the_node(archive, api)
    headers, study = await failed_in_new_session(api, PARTIAL.study_uid)
    assert study["message"] == f"{ARCHIVE}: C-MOVE failed with status 0xC000 (Failure)"
    # The two whole instances came, then the bad one ended the C-MOVE.
    assert progress(study) == (2, 3)
    await fails_again_with_two_of_three(api, headers, PARTIAL.study_uid)


async def test_a_partial_study_opened_in_another_session_is_retrieved_again(
        archive: OrthancProcess, instances: list[Api]) -> None:
    api = instances[1]
    knows_the_node(archive, api)
    await failed_in_new_session(api, PARTIAL_AGAIN.study_uid)
    # The index now holds two of its three instances: for a new session it is neither
    # the session's nor whole, so it is retrieved again rather than shown.
    await fails_again_with_two_of_three(api, await searching(api), PARTIAL_AGAIN.study_uid)


async def test_a_token_naming_a_study_here_in_part_retrieves_it_again(
        archive: OrthancProcess, instances: list[Api]) -> None:
    api = instances[0]
    knows_the_node(archive, api)
    await failed_in_new_session(api, PARTIAL_TOKEN.study_uid)
    # A token naming the study, as a RIS opens it: the index holds two of its three
    # instances, and the last retrieval failed: it is retrieved again, never "available".
    headers = await api.session_headers({**BASE, "studyUID": PARTIAL_TOKEN.study_uid})
    study = await context_study(api, headers, PARTIAL_TOKEN.study_uid)
    assert study["state"] != "available", study
    assert study["source"] == ARCHIVE
    await fails_again_with_two_of_three(api, headers, PARTIAL_TOKEN.study_uid)


async def test_a_study_here_in_part_from_a_node_no_longer_configured_is_failed_not_shown(
        archive: OrthancProcess, instances: list[Api]) -> None:
    api = instances[0]
    knows_the_node(archive, api)
    await failed_in_new_session(api, PARTIAL_GONE.study_uid)
    # Another instance on the same database, configured without that source node.
    config = config_from_dict(config_dict([], dicom={"port": free_port()},
                                          http={"port": free_port()}), base_dir=api.folder)
    async with running_app(api.folder, config=config) as without_sources:
        headers = await without_sources.session_headers(
            {**BASE, "studyUID": PARTIAL_GONE.study_uid})
        study = await context_study(without_sources, headers, PARTIAL_GONE.study_uid)
        assert (study["state"], study["source"]) == ("failed", ARCHIVE), study
        assert study["message"] == (f"{ARCHIVE} is no longer a source node: the study is here "
                                    "in part")
        assert WAITING_TEXT in await open_study(without_sources, headers,
                                                PARTIAL_GONE.study_uid)


async def test_the_waiting_page_shows_the_failure_and_its_retry_button_opens_the_study(
        archive: OrthancProcess, instances: list[Api], browser: Browser) -> None:
    api = instances[0]
    archive.remove_modality(NODE)
    token = await api.token({**BASE, "studyUID": LOCAL.study_uid, "hideSearch": "false"})
    opened = await open_url(api, browser, f"/ngv?q={token}")
    page = opened.page
    await page.goto(f"{opened.origin}/viewer/viewer?StudyInstanceUIDs={IN_BROWSER.study_uid}")
    await page.get_by_text("could not be retrieved").wait_for(timeout=60_000)
    text = await page.text_content("body") or ""
    assert f"among {ARCHIVE}'s C-MOVE destinations" in text
    assert IN_BROWSER.patient_name.split("^")[0] not in text
    await screenshot(page, "ohif-found-study-retrieval-failed")

    knows_the_node(archive, api)
    await page.get_by_role("button", name="Retry").click()
    stats = await first_image(opened)
    assert stats["std"] > 10, stats
    assert f"StudyInstanceUIDs={IN_BROWSER.study_uid}" in page.url
    assert [m for m in opened.console if "Content Security Policy" in m] == []
    await opened.close()
