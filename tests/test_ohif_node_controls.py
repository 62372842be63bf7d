"""The node's own controls in OHIF (rest/ohif/page_controls.py), in headless Chromium: the
"Download ISO" toolbar button, and one patient per window with a patient switcher (and its
JSON route, GET /viewer/patients).

One app and a few small studies of three patients for the module; the browser is the
session's (tests/browser.py), each test in a fresh browser context.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Browser, Page

from node.viewing.roles import add_role
from tests.browser import browser, screenshot, wait_until
from tests.factory import StudySpec, uid
from tests.rest_support import ROLE, Api, running_app
from tests.test_ohif_browser import Session, first_image, open_url
from tests.viewer_data import ct_instances, write_all

__all__ = ["browser"]


FIRST = StudySpec(study_uid=uid(8701), patient_id="PID-SWITCH-1",
                  patient_name="MARCHBANKS^PERPETUA", accession="ACC-SW-1",
                  study_date="20240510", study_description="CT FIRST PATIENT",
                  rows=64, columns=64)
SECOND = StudySpec(study_uid=uid(8702), patient_id="PID-SWITCH-2",
                   patient_name="OAKENSHAW^TIBERIUS", accession="ACC-SW-2",
                   study_date="20240601", study_description="CT SECOND PATIENT",
                   rows=64, columns=64)
# In the index, named by no token of this module: never listed.
STRANGER = StudySpec(study_uid=uid(8703), patient_id="PID-SWITCH-3",
                     patient_name="FERNSBY^WILHELMINA", accession="ACC-SW-3",
                     study_date="20240701", study_description="CT THIRD PATIENT",
                     rows=64, columns=64)
# A role that may look, not download.
LOOKER = "ohif-looker"
ISO_BUTTON = "[data-cy='DownloadIso']"
SWITCHER = "#viewnode-patient-switcher"
# What OHIF itself draws (the switcher is outside it).
OHIF_ROOT = "#root"
# Set by the page once it has asked the node for the session's patients.
PATIENTS_LOADED = "() => document.documentElement.dataset.viewnodePatients !== undefined"
ISO_SIGNATURE_OFFSET = 32769


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("ohif-node-controls")
    async with running_app(folder) as api:
        for spec in (FIRST, SECOND, STRANGER):
            for path in write_all(folder / spec.study_uid, ct_instances(spec, 2)):
                await api.services.ingestor.ingest_copy(path, "import")
        await add_role(api.services.sessions, LOOKER, ["documents"])
        yield api


def token_params(*studies: StudySpec, **params: str) -> list[tuple[str, str]]:
    given = {"username": "radiologist", "role": ROLE, **params}
    return [*given.items(), *(("studyUID", spec.study_uid) for spec in studies)]


async def open_studies(api: Api, browser: Browser, *studies: StudySpec,
                       **params: str) -> Session:
    token = await api.token(token_params(*studies, **params))
    return await open_url(api, browser, f"/ngv?q={token}")


async def switcher_labels(page: Page) -> list[str]:
    await wait_until(page, PATIENTS_LOADED)
    return await page.locator(f"{SWITCHER} option").all_text_contents()


# Download ISO


async def test_download_iso_downloads_the_studys_iso(api: Api, browser: Browser) -> None:
    opened = await open_studies(api, browser, FIRST)
    await first_image(opened)
    page = opened.page
    async with page.expect_download() as waited:
        await page.locator(ISO_BUTTON).click()
    download = await waited.value
    assert download.url.endswith(f"/ngv/api/studies/{FIRST.study_uid}/iso")
    path = await download.path()
    data = path.read_bytes()
    assert data[ISO_SIGNATURE_OFFSET:ISO_SIGNATURE_OFFSET + 5] == b"CD001"
    assert download.suggested_filename.endswith(".iso")
    await opened.close()


@pytest.mark.parametrize("params", [{"role": LOOKER}, {"anonymize": "true"}],
                         ids=["without-download", "anonymized"])
async def test_download_iso_is_absent_without_download_or_when_anonymized(
        api: Api, browser: Browser, params: dict[str, str]) -> None:
    opened = await open_studies(api, browser, FIRST, **params)
    await first_image(opened)
    assert await opened.page.locator("[data-cy='Zoom']").count() == 1
    assert await opened.page.locator(ISO_BUTTON).count() == 0
    await opened.close()


# One patient per window


async def test_a_token_of_two_patients_opens_the_first_patients_studies_only(
        api: Api, browser: Browser) -> None:
    opened = await open_studies(api, browser, FIRST, SECOND)
    await first_image(opened)
    page = opened.page
    assert parse_qs(urlsplit(page.url).query)["StudyInstanceUIDs"] == [FIRST.study_uid]
    await page.wait_for_function(
        f"() => document.body.textContent.includes('{FIRST.study_description}')")
    text = await page.text_content(OHIF_ROOT) or ""
    assert "MARCHBANKS, PERPETUA" in text
    assert "Multiple Patients" not in text
    assert "OAKENSHAW" not in text and SECOND.study_description not in text
    await opened.close()


async def test_the_patient_switcher_lists_both_and_opens_the_second(
        api: Api, browser: Browser) -> None:
    opened = await open_studies(api, browser, FIRST, SECOND)
    await first_image(opened)
    page = opened.page
    assert await switcher_labels(page) == ["MARCHBANKS, PERPETUA (PID-SWITCH-1)",
                                           "OAKENSHAW, TIBERIUS (PID-SWITCH-2)"]
    await screenshot(page, "ohif-patient-switcher")
    await page.locator(SWITCHER).select_option(index=1)
    await page.wait_for_url(f"**/viewer/viewer?StudyInstanceUIDs={SECOND.study_uid}*")
    await first_image(opened)
    await page.wait_for_function(
        f"() => document.body.textContent.includes('{SECOND.study_description}')")
    assert await page.locator(SWITCHER).input_value() == "1"
    banner = await page.text_content(OHIF_ROOT) or ""
    assert "OAKENSHAW, TIBERIUS" in banner
    assert "MARCHBANKS" not in banner and FIRST.study_description not in banner
    assert "Multiple Patients" not in banner
    await opened.close()


async def test_the_switcher_names_no_context_patient_for_another_patients_study(
        api: Api, browser: Browser) -> None:
    """A study opened from the study list is none of the context's patients: the switcher
    says so instead of showing the first patient's name over it."""
    opened = await open_studies(api, browser, FIRST, SECOND)
    await first_image(opened)
    page = opened.page
    await page.goto(f"{opened.origin}/viewer/viewer?StudyInstanceUIDs={STRANGER.study_uid}")
    assert await switcher_labels(page) == ["Choose a patient",
                                           "MARCHBANKS, PERPETUA (PID-SWITCH-1)",
                                           "OAKENSHAW, TIBERIUS (PID-SWITCH-2)"]
    selected = page.locator(f"{SWITCHER} option:checked")
    assert await selected.text_content() == "Choose a patient"
    await opened.close()


async def test_an_anonymized_switcher_names_no_patient(api: Api, browser: Browser) -> None:
    opened = await open_studies(api, browser, FIRST, SECOND, anonymize="true")
    await first_image(opened)
    page = opened.page
    assert await switcher_labels(page) == ["Patient 1", "Patient 2"]
    dom = await page.content()
    for secret in ("MARCHBANKS", "OAKENSHAW", FIRST.patient_id, SECOND.patient_id):
        assert secret not in dom, secret
    await opened.close()


async def test_one_patient_has_no_switcher(api: Api, browser: Browser) -> None:
    opened = await open_studies(api, browser, FIRST)
    await first_image(opened)
    assert await switcher_labels(opened.page) == []
    await opened.close()


# GET /viewer/patients


async def patients(api: Api, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await api.client.get("/viewer/patients", headers=headers)
    assert response.status == 200, await response.text()
    answer: list[dict[str, Any]] = (await response.json())["patients"]
    return answer


async def test_the_patients_route_needs_a_session(api: Api) -> None:
    response = await api.client.get("/viewer/patients")
    assert response.status == 401
    assert "error" in await response.json()
    response = await api.client.get("/viewer/patients",
                                    headers={"Cookie": "ngv_session=not-a-session"})
    assert response.status == 401


async def test_the_patients_route_answers_the_sessions_own_patients_only(api: Api) -> None:
    both = await patients(api, await api.session_headers(token_params(FIRST, SECOND)))
    assert both == [
        {"label": "MARCHBANKS, PERPETUA (PID-SWITCH-1)", "name": "MARCHBANKS, PERPETUA",
         "patientID": FIRST.patient_id, "issuer": None, "studyInstanceUIDs": [FIRST.study_uid],
         "url": f"/viewer/viewer?StudyInstanceUIDs={FIRST.study_uid}"},
        {"label": "OAKENSHAW, TIBERIUS (PID-SWITCH-2)", "name": "OAKENSHAW, TIBERIUS",
         "patientID": SECOND.patient_id, "issuer": None,
         "studyInstanceUIDs": [SECOND.study_uid],
         "url": f"/viewer/viewer?StudyInstanceUIDs={SECOND.study_uid}"}]
    one = await patients(api, await api.session_headers(token_params(SECOND)))
    assert [p["patientID"] for p in one] == [SECOND.patient_id]
    assert STRANGER.patient_id not in str(both + one)


async def test_the_patients_route_of_an_anonymized_session_names_no_one(api: Api) -> None:
    answer = await patients(api, await api.session_headers(
        token_params(FIRST, SECOND, anonymize="true")))
    assert [(p["label"], p["name"], p["patientID"], p["issuer"]) for p in answer] == [
        ("Patient 1", None, None, None), ("Patient 2", None, None, None)]
    assert [p["studyInstanceUIDs"] for p in answer] == [[FIRST.study_uid], [SECOND.study_uid]]


async def test_a_study_not_in_the_index_goes_with_the_first_patient(api: Api) -> None:
    """No patient row tells whose it is: it stays in the window the token opens, whose waiting
    page waits for it, rather than in a patient of its own or in no window at all."""
    absent = StudySpec(study_uid=uid(8709))
    answer = await patients(api, await api.session_headers(token_params(SECOND, absent, FIRST)))
    assert [p["studyInstanceUIDs"] for p in answer] == [
        [SECOND.study_uid, absent.study_uid], [FIRST.study_uid]]
    response, _ = await api.redeem(await api.token(token_params(SECOND, absent, FIRST)))
    assert response.headers["Location"] == answer[0]["url"]


async def test_each_patients_window_keeps_the_tokens_sticky(api: Api) -> None:
    """A proxy that keeps a session on one instance by `sticky` sees it on every window."""
    answer = await patients(api, await api.session_headers(
        token_params(FIRST, SECOND, sticky="node-b")))
    assert [p["url"] for p in answer] == [
        f"/viewer/viewer?StudyInstanceUIDs={FIRST.study_uid}&sticky=node-b",
        f"/viewer/viewer?StudyInstanceUIDs={SECOND.study_uid}&sticky=node-b"]
