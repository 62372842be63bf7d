"""The viewer in headless Chromium: what a radiologist sees after opening a token URL.

One app (in-process, real index and storage) and one browser for the module; each test opens
its own token in a fresh browser context and saves a screenshot under tests/artifacts/.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Response
from playwright.async_api import Error as PlaywrightError

from tests.browser import browser, new_page, screenshot
from tests.factory import StudySpec, uid
from tests.rest_support import ROLE, Api, running_app
from tests.viewer_data import ct_instances, sr_instance, wrapped_file, write_all

__all__ = ["browser"]

PATIENT = "PID-VIEW-1"
NAME = "ZEBRAWSKI^ODALYS"
CT = StudySpec(study_uid=uid(8101), patient_id=PATIENT, patient_name=NAME,
               accession="ACC-VIEW-1", study_date="20240510", study_description="CT THORAX",
               rows=256, columns=256)
PRIOR = StudySpec(study_uid=uid(8102), patient_id=PATIENT, patient_name=NAME,
                  accession="ACC-VIEW-0", study_date="20230105",
                  study_description="CT THORAX PRIOR", rows=256, columns=256)
PRIOR_2 = StudySpec(study_uid=uid(8103), patient_id=PATIENT, patient_name=NAME,
                    accession="ACC-VIEW-00", study_date="20220105",
                    study_description="CT THORAX OLDER", rows=128, columns=128)
SLICES = 50
BASE = {"username": "radiologist", "role": ROLE}
READY = ".viewport[data-state='ready']"

PIXELS_JS = """(selector) => {
  const canvas = document.querySelector(selector + ' canvas');
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0, squares = 0, count = 0, hash = 0;
  for (let i = 0; i < data.length; i += 4 * 13) {
    const v = data[i];
    sum += v; squares += v * v; count += 1; hash = (hash * 31 + v + data[i + 1]) | 0;
  }
  const mean = sum / count;
  return {mean, std: Math.sqrt(squares / count - mean * mean), hash};
}"""


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("viewer-browser")
    async with running_app(folder) as api:
        files = write_all(folder / "ct", ct_instances(CT, SLICES))
        files += write_all(folder / "prior", ct_instances(PRIOR, 12))
        files += write_all(folder / "prior2", ct_instances(PRIOR_2, 5))
        files += write_all(folder / "sr", [sr_instance(CT)])
        files += [wrapped_file(folder / "wrapped", kind, CT, series)
                  for kind, series in (("pdf", 40), ("mp4", 41), ("png", 42))]
        for path in files:
            await api.services.ingestor.ingest_copy(path, "import")
        yield api


async def open_viewer(api: Api, browser: Browser, params: dict[str, Any],
                      options: dict[str, Any] | None = None,
                      size: tuple[int, int] = (1920, 1080)) -> Page:
    token = await api.token({**BASE, **params})
    if options:
        await api.set_options(token, options)
    page = await new_page(browser, *size)
    await goto_old_viewer(api, page, f"/ngv?q={token}")
    return page


async def goto_old_viewer(api: Api, page: Page, token_path: str) -> None:
    """Redeem the token (which opens OHIF), then open the hand-written page on the session."""
    await page.goto(str(api.client.make_url(token_path)))
    await page.goto(str(api.client.make_url("/ngv/viewer")))



async def pixels(page: Page, selector: str = ".viewport") -> dict[str, float]:
    result: dict[str, float] = await page.evaluate(PIXELS_JS, selector)
    return result


async def test_first_image_of_a_50_image_ct_is_drawn(api: Api, browser: Browser) -> None:
    started = time.perf_counter()
    page = await open_viewer(api, browser, {"studyUID": CT.study_uid})
    await page.wait_for_selector(READY)
    elapsed = time.perf_counter() - started
    stats = await pixels(page)
    assert stats["std"] > 20, stats
    assert await page.get_attribute(".viewport", "data-count") == str(SLICES)
    assert await page.text_content(".overlay.tr") == f"Im 1/{SLICES}"
    await screenshot(page, "viewer-first-image")
    print(f"first image drawn {elapsed * 1000:.0f} ms after loading the token URL")
    await page.context.close()


async def test_wheel_and_keys_move_through_the_stack(api: Api, browser: Browser) -> None:
    page = await open_viewer(api, browser, {"studyUID": CT.study_uid})
    await page.wait_for_selector(READY)
    before = await pixels(page)
    box = await page.locator(".viewport").bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(5):
        await page.mouse.wheel(0, 120)
    await page.wait_for_selector(".viewport[data-state='ready'][data-index='5']")
    after = await pixels(page)
    assert after["hash"] != before["hash"]
    assert await page.text_content(".overlay.tr") == f"Im 6/{SLICES}"
    await page.keyboard.press("End")
    await page.wait_for_selector(f".viewport[data-state='ready'][data-index='{SLICES - 1}']")
    await page.keyboard.press("ArrowUp")
    await page.wait_for_selector(f".viewport[data-state='ready'][data-index='{SLICES - 2}']")
    await screenshot(page, "viewer-scrolled")
    await page.context.close()


async def test_window_level_drag_and_presets_change_the_pixels(
        api: Api, browser: Browser) -> None:
    page = await open_viewer(api, browser, {"studyUID": CT.study_uid})
    await page.wait_for_selector(READY)
    before = await pixels(page)
    assert await page.text_content(".overlay.bl") == "W 400  L 40"
    box = await page.locator(".viewport canvas").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await page.mouse.move(x, y)
    await page.mouse.down()
    await page.mouse.move(x + 150, y + 80, steps=6)
    await page.mouse.up()
    await page.wait_for_function(
        "() => document.querySelector('.overlay.bl').textContent !== 'W 400  L 40'")
    await page.wait_for_selector(READY)
    await page.wait_for_timeout(200)
    dragged = await pixels(page)
    assert dragged["hash"] != before["hash"]
    await screenshot(page, "viewer-window-dragged")
    await page.keyboard.press("2")  # the lung preset
    await page.wait_for_function(
        "() => document.querySelector('.overlay.bl').textContent === 'W 1500  L -600'")
    await page.wait_for_selector(READY)
    lung = await pixels(page)
    assert lung["hash"] not in (before["hash"], dragged["hash"])
    await page.keyboard.press("r")
    await page.wait_for_function(
        "() => document.querySelector('.overlay.bl').textContent === 'W 400  L 40'")
    await page.context.close()


async def test_thumbnails_show_and_collapse_when_asked(api: Api, browser: Browser) -> None:
    page = await open_viewer(api, browser, {"studyUID": CT.study_uid})
    await page.wait_for_selector(".thumbnail img")
    assert await page.is_visible("#tray")
    assert await page.locator(".thumbnail").count() == 5
    await page.context.close()
    page = await open_viewer(api, browser, {"studyUID": CT.study_uid},
                             options={"collapsePreviews": True})
    await page.wait_for_selector(READY)
    assert not await page.is_visible("#tray")
    assert await page.get_attribute("#tray-toggle", "aria-expanded") == "false"
    await screenshot(page, "viewer-thumbnails-collapsed")
    await page.keyboard.press("t")
    assert await page.is_visible("#tray")
    await page.context.close()


async def test_documents_are_absent_by_default(api: Api, browser: Browser) -> None:
    page = await open_viewer(api, browser, {"studyUID": CT.study_uid})
    await page.wait_for_selector(READY)
    assert await page.locator("#documents").count() == 0
    assert await page.locator("#documents-toggle").count() == 0
    await page.context.close()


async def test_documents_show_pdf_and_sr_text_when_allowed(api: Api, browser: Browser) -> None:
    page = await open_viewer(api, browser, {"studyUID": CT.study_uid,
                                            "hideDocuments": "false"})
    await page.wait_for_selector("#document-list button.document")
    labels = await page.locator("#document-list button.document").all_text_contents()
    assert len(labels) == 2 and any(label.startswith("PDF") for label in labels)
    await page.locator("#document-list button.document", has_text="Report").click()
    await page.wait_for_selector(".report .line")
    text = await page.text_content(".report")
    assert text is not None
    assert "No focal lesion of the liver." in text and "12.5 millimeter" in text
    await screenshot(page, "viewer-documents-sr")
    await page.locator("#document-list button.document", has_text="PDF").click()
    frame = page.locator("#document-view iframe")
    assert "/document" in (await frame.get_attribute("src") or "")
    await page.context.close()


async def test_search_is_absent_by_default_and_present_when_allowed(
        api: Api, browser: Browser) -> None:
    page = await open_viewer(api, browser, {"studyUID": CT.study_uid})
    await page.wait_for_selector(READY)
    assert await page.locator("#search-open").count() == 0
    assert await page.locator("#search").count() == 0
    await page.context.close()
    page = await open_viewer(api, browser, {"studyUID": CT.study_uid, "hideSearch": "false"})
    await page.wait_for_selector(READY)
    await page.keyboard.press("/")
    await page.fill("input[name=patientID]", PATIENT)
    await page.click("#search-run")
    await page.wait_for_selector("#search-results table")
    rows = await page.locator("#search-results tr").count()
    assert rows == 1 + 3
    await screenshot(page, "viewer-search")
    await page.context.close()


async def test_anonymized_context_shows_no_patient_identifiers(
        api: Api, browser: Browser) -> None:
    token = await api.token({**BASE, "studyUID": CT.study_uid, "anonymize": "true",
                             "hideDocuments": "false"})
    page = await new_page(browser)
    bodies: list[str] = []

    async def keep(response: Response) -> None:
        kind = response.headers.get("content-type", "")
        if kind.startswith(("text/", "application/json")) and response.status < 300:
            try:
                bodies.append(await response.text())
            except PlaywrightError:  # OHIF's page, left for /ngv/viewer before it was read
                assert not response.url.split("?")[0].endswith(("/ngv/viewer", "/ngv/api/"))

    page.on("response", keep)
    await goto_old_viewer(api, page, f"/ngv?q={token}")
    await page.wait_for_selector(READY)
    await page.locator("#document-list button.document", has_text="Report").click()
    await page.wait_for_selector(".report .line")
    await page.wait_for_timeout(300)
    dom = await page.content()
    secrets = ("ZEBRAWSKI", "ODALYS", PATIENT, CT.accession, "19700101", "HOUSE")
    assert "Anonymized patient" in dom
    for secret in secrets:
        assert secret not in dom, secret
        for body in bodies:
            assert secret not in body, secret
    assert len(bodies) >= 3
    await screenshot(page, "viewer-anonymized")
    await page.context.close()


async def test_patient_banner_names_the_patient(api: Api, browser: Browser) -> None:
    page = await open_viewer(api, browser, {"studyUID": CT.study_uid})
    assert await page.text_content(".patient-name") == "ZEBRAWSKI, ODALYS"
    assert PATIENT in (await page.text_content("#patient") or "")
    await page.context.close()


async def test_a_used_token_url_shows_already_used(api: Api, browser: Browser) -> None:
    token = await api.token({**BASE, "studyUID": CT.study_uid})
    url = str(api.client.make_url(f"/ngv?q={token}"))
    page = await new_page(browser)
    await goto_old_viewer(api, page, f"/ngv?q={token}")
    await page.wait_for_selector(READY)
    second = await new_page(browser)
    response = await second.goto(url)
    assert response is not None and response.status == 403
    assert "already been used" in (await second.text_content("body") or "")
    await screenshot(second, "viewer-token-already-used")
    await page.context.close()
    await second.context.close()


async def test_unknown_study_says_study_not_found(api: Api, browser: Browser) -> None:
    page = await open_viewer(api, browser, {"studyUID": uid(8199)})
    await page.wait_for_selector(".viewport[data-state='not-found']")
    assert "Study not found" in (await page.text_content(".viewport .message") or "")
    await screenshot(page, "viewer-study-not-found")
    await page.context.close()


async def test_secondary_monitor_shows_the_priors_side_by_side(
        api: Api, browser: Browser) -> None:
    answer = await api.get("/ngv/multimonitor-api", {
        **BASE, "patientID": PATIENT, "numberOfMonitors": "2", "idIssuer": "NONE",
        "studyInstanceUID": CT.study_uid})
    urls = await answer.json()
    page = await new_page(browser)
    await goto_old_viewer(api, page, urls["secondaryMonitorRelativeUrl"])
    await page.wait_for_selector("#grid[data-columns='2']")
    await page.wait_for_function(
        "() => document.querySelectorAll(\".viewport[data-state='ready']\").length === 2")
    shown = await page.locator(".study").evaluate_all("(all) => all.map(b => b.dataset.study)")
    assert shown == [PRIOR.study_uid, PRIOR_2.study_uid]
    assert CT.study_uid not in await page.content()
    for position in (0, 1):
        stats = await pixels(page, f".viewport[data-position='{position}']")
        assert stats["std"] > 10
    await screenshot(page, "viewer-secondary-priors")
    await page.context.close()


async def test_history_panel_lists_other_studies_and_opens_them(
        api: Api, browser: Browser) -> None:
    page = await open_viewer(api, browser, {"studyUID": CT.study_uid}, size=(1366, 768))
    await page.wait_for_selector(READY)
    studies = page.locator(".study")
    assert await studies.count() == 3
    await page.click(f".study[data-study='{PRIOR.study_uid}']")
    await page.wait_for_selector(".viewport[data-state='ready'][data-count='12']")
    await screenshot(page, "viewer-laptop-prior-opened")
    await page.context.close()


async def test_video_series_plays_in_a_video_element(api: Api, browser: Browser) -> None:
    page = await open_viewer(api, browser, {"studyUID": CT.study_uid})
    await page.wait_for_selector(".thumbnail")
    await page.click(".thumbnail:has-text('wrapped mp4')")
    video = page.locator(".viewport video")
    await video.wait_for()
    source = await video.get_attribute("src")
    assert source is not None and source.endswith("/video")
    response = await page.request.get(str(api.client.make_url(source)))
    assert response.status == 200 and response.headers["content-type"] == "video/mp4"
    assert (await response.body())[4:8] == b"ftyp"
    await page.context.close()
