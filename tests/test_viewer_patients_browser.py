"""Whose images are on screen, in headless Chromium: the banner, the study list and every
viewport's overlay name the patient of the images shown, when a study of another patient is
opened from the search and when the token names studies of two patients from the start.

A watcher in the page checks every few milliseconds, for the whole test, that no viewport
draws a study of one patient while the banner names another.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from tests.browser import browser, new_page, screenshot
from tests.factory import StudySpec, uid
from tests.rest_support import ROLE, Api, running_app
from tests.viewer_data import ct_instances, write_all

__all__ = ["browser"]

ALPHA = StudySpec(study_uid=uid(8601), patient_id="PID-WIN-A", patient_name="ALDERWOOD^BRIONY",
                  accession="ACC-WIN-A", study_date="20240301", rows=96, columns=96)
ALPHA_PRIOR = StudySpec(study_uid=uid(8602), patient_id="PID-WIN-A",
                        patient_name="ALDERWOOD^BRIONY", accession="ACC-WIN-A0",
                        study_date="20210301", rows=96, columns=96)
BETA = StudySpec(study_uid=uid(8603), patient_id="PID-WIN-B",
                 patient_name="BRACKENRIDGE^CORMAC", accession="ACC-WIN-B",
                 study_date="20220615", study_description="CT ABDOMEN", rows=96, columns=96)
BETA_PRIOR = StudySpec(study_uid=uid(8604), patient_id="PID-WIN-B",
                       patient_name="BRACKENRIDGE^CORMAC", accession="ACC-WIN-B0",
                       study_date="20190101", rows=96, columns=96)
A_NAME, B_NAME = "ALDERWOOD, BRIONY", "BRACKENRIDGE, CORMAC"
OWNER = {ALPHA.study_uid: A_NAME, ALPHA_PRIOR.study_uid: A_NAME,
         BETA.study_uid: B_NAME, BETA_PRIOR.study_uid: B_NAME}
READY = ".viewport[data-state='ready']"

# Records every moment a drawn viewport's study belongs to someone else than the banner names,
# or its overlay names someone else than the study's patient.
WATCH_JS = """(owner) => {
  window.wrongPatient = [];
  setInterval(() => {
    const banner = document.querySelector('#patient .patient-name')?.textContent || '';
    for (const viewport of document.querySelectorAll(".viewport[data-state='ready']")) {
      const study = viewport.dataset.study;
      const overlay = viewport.querySelector('.overlay-patient')?.textContent || '';
      if (owner[study] !== banner || !overlay.startsWith(owner[study])) {
        window.wrongPatient.push({study, banner, overlay});
      }
    }
  }, 5);
}"""


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("viewer-patients-browser")
    async with running_app(folder) as api:
        files = []
        for spec, count in ((ALPHA, 6), (ALPHA_PRIOR, 3), (BETA, 5), (BETA_PRIOR, 2)):
            files += write_all(folder / spec.study_uid, ct_instances(spec, count))
        for path in files:
            await api.services.ingestor.ingest_copy(path, "import")
        yield api


async def open_viewer(api: Api, browser: Browser, params: list[tuple[str, str]]) -> Page:
    token = await api.token([("username", "radiologist"), ("role", ROLE), *params])
    page = await new_page(browser)
    # Redeeming the token opens OHIF; the hand-written page is then opened on the session.
    await page.goto(str(api.client.make_url(f"/ngv?q={token}")))
    await page.goto(str(api.client.make_url("/ngv/viewer")))
    await page.evaluate(WATCH_JS, OWNER)
    return page


async def shown(page: Page) -> dict[str, Any]:
    """The banner, the studies listed, and the first viewport's study and overlay."""
    result: dict[str, Any] = await page.evaluate("""() => ({
      banner: document.querySelector('#patient .patient-name').textContent,
      studies: [...document.querySelectorAll('#study-list .study')].map((b) => b.dataset.study),
      study: document.querySelector('.viewport').dataset.study,
      overlay: document.querySelector('.viewport .overlay-patient').textContent,
      date: document.querySelector('.viewport .overlay-date').textContent,
      switch: [...document.querySelectorAll('#patient-switch button')].map((b) => b.textContent),
      wrong: window.wrongPatient,
    })""")
    return result


async def showing(page: Page, study_uid: str) -> dict[str, Any]:
    await page.wait_for_selector(f".viewport[data-state='ready'][data-study='{study_uid}']")
    return await shown(page)


async def test_opening_another_patients_study_from_search_switches_the_window(
        api: Api, browser: Browser) -> None:
    page = await open_viewer(api, browser, [("studyUID", ALPHA.study_uid),
                                            ("hideSearch", "false")])
    before = await showing(page, ALPHA.study_uid)
    assert before["banner"] == A_NAME and before["overlay"].startswith(A_NAME)
    assert before["date"] == "2024-03-01" and before["switch"] == []
    await page.keyboard.press("/")
    await page.fill("input[name=patientName]", "BRACKENRIDGE")
    await page.click("#search-run")
    row = page.locator("#search-results tr", has_text=BETA.study_description)
    await row.locator("button", has_text="Open").click()
    after = await showing(page, BETA.study_uid)
    assert after["banner"] == B_NAME
    assert "PID-WIN-B" in (await page.text_content("#patient") or "")
    assert sorted(after["studies"]) == sorted([BETA.study_uid, BETA_PRIOR.study_uid])
    assert after["overlay"] == f"{B_NAME}  PID-WIN-B" and after["date"] == "2022-06-15"
    assert [text.split(" PID")[0] for text in after["switch"]] == [A_NAME, B_NAME]
    await screenshot(page, "viewer-patient-switched-by-search")
    await page.click("#patient-switch button[data-patient='p1']")
    back = await showing(page, ALPHA.study_uid)
    assert back["banner"] == A_NAME and back["overlay"].startswith(A_NAME)
    assert sorted(back["studies"]) == sorted([ALPHA.study_uid, ALPHA_PRIOR.study_uid])
    assert back["wrong"] == []
    await page.context.close()


async def test_a_context_of_two_patients_never_shows_one_under_the_others_name(
        api: Api, browser: Browser) -> None:
    page = await open_viewer(api, browser, [("studyUID", ALPHA.study_uid),
                                            ("studyUID", BETA.study_uid)])
    first = await showing(page, ALPHA.study_uid)
    assert first["banner"] == A_NAME and first["date"] == "2024-03-01"
    assert BETA.study_uid not in first["studies"]
    assert len(first["switch"]) == 2
    await page.click("#patient-switch button[data-patient='p2']")
    second = await showing(page, BETA.study_uid)
    assert second["banner"] == B_NAME and second["overlay"].startswith(B_NAME)
    assert ALPHA.study_uid not in second["studies"]
    await page.click(f"#study-list .study[data-study='{BETA_PRIOR.study_uid}']")
    prior = await showing(page, BETA_PRIOR.study_uid)
    assert prior["banner"] == B_NAME and prior["date"] == "2019-01-01"
    await screenshot(page, "viewer-two-patients-second")
    assert prior["wrong"] == []
    await page.context.close()


async def test_anonymized_two_patients_are_numbered_never_named(
        api: Api, browser: Browser) -> None:
    page = await open_viewer(api, browser, [("studyUID", ALPHA.study_uid),
                                            ("studyUID", BETA.study_uid),
                                            ("anonymize", "true")])
    await page.wait_for_selector(READY)
    assert await page.text_content("#patient .patient-name") == "Anonymized patient 1"
    assert await page.text_content(".viewport .overlay-patient") == "Anonymized patient 1"
    assert await page.text_content(".viewport .overlay-date") == ""
    await page.click("#patient-switch button[data-patient='p2']")
    await page.wait_for_selector(f".viewport[data-state='ready'][data-study='{BETA.study_uid}']")
    assert await page.text_content(".viewport .overlay-patient") == "Anonymized patient 2"
    dom = await page.content()
    for secret in ("ALDERWOOD", "BRACKENRIDGE", "PID-WIN-A", "PID-WIN-B"):
        assert secret not in dom, secret
    await page.context.close()
