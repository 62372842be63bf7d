"""OHIF Viewer in headless Chromium: what a radiologist sees after opening a token URL.

One app (in-process, real index and storage, the OHIF build prepared from node_modules) and one
browser for the module; each test opens its own token in a fresh browser context. WebGL runs
on SwiftShader. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.async_api import Browser, ConsoleMessage, Page, Request, Response
from playwright.async_api import Error as PlaywrightError
from sqlalchemy import select, update

from node.index.viewing_models import ContextStudy, ViewingContext
from node.viewing import revoke_token
from node.viewing.hanging_protocols import Rule, add_protocol
from node.viewing.roles import add_role
from node.viewing.token_secrets import token_key
from tests.browser import browser, new_page, screenshot
from tests.factory import StudySpec, uid
from tests.rest_support import ROLE, Api, running_app
from tests.viewer_data import ct_instances, sr_instance, wrapped_file, write_all

__all__ = ["browser"]


PATIENT = "PID-OHIF-1"
NAME = "ZEBRAWSKI^ODALYS"
CT = StudySpec(study_uid=uid(8301), patient_id=PATIENT, patient_name=NAME,
               accession="ACC-OHIF-1", study_date="20240510", study_description="CT THORAX",
               rows=256, columns=256)
PRIOR = StudySpec(study_uid=uid(8302), patient_id=PATIENT, patient_name=NAME,
                  accession="ACC-OHIF-0", study_date="20230105",
                  study_description="CT THORAX PRIOR", rows=256, columns=256)
PRIOR_2 = StudySpec(study_uid=uid(8304), patient_id=PATIENT, patient_name=NAME,
                    accession="ACC-OHIF-00", study_date="20220105",
                    study_description="CT THORAX OLDER", rows=128, columns=128)
OTHER = StudySpec(study_uid=uid(8303), patient_id="PID-OHIF-OTHER",
                  patient_name="QUILLFEATHER^BARNABY", accession="ACC-OHIF-9",
                  study_date="20240601", study_description="CT OTHER PATIENT",
                  rows=128, columns=128)
SLICES = 8
BASE = {"username": "radiologist", "role": ROLE}
# A role that may look, not download or save.
READER = "ohif-reader"
VIEWPORT = "[data-cy='viewport-pane']"
STUDY_BROWSER = "[data-cy='studyBrowser-panel']"
MEASUREMENTS_BUTTON = "[data-cy='trackedMeasurements-btn']"
# The viewport's bottom-left overlay shows the window once an image is drawn.
DRAWN = ("() => { const o = document.querySelector(\"[data-cy='viewport-overlay-bottom-left']\");"
         " return !!o && o.textContent.includes('W:'); }")
PDF_MAGIC = """async (url) => {
  const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
  return String.fromCharCode(...bytes.slice(0, 4));
}"""
SECRETS = ("ZEBRAWSKI", "ODALYS", PATIENT, CT.accession, "19700101", "HOUSE")


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("ohif-browser")
    async with running_app(folder) as api:
        files = write_all(folder / "ct", ct_instances(CT, SLICES))
        files += write_all(folder / "prior", ct_instances(PRIOR, 4))
        files += write_all(folder / "prior2", ct_instances(PRIOR_2, 3))
        files += write_all(folder / "other", ct_instances(OTHER, 2))
        files += write_all(folder / "sr", [sr_instance(CT)])
        files += [wrapped_file(folder / "wrapped", kind, CT, series)
                  for kind, series in (("pdf", 40), ("mp4", 41))]
        for path in files:
            await api.services.ingestor.ingest_copy(path, "import")
        await add_role(api.services.sessions, READER, ["documents"])
        # A user whose protocol puts CT in the right of two cells, and one whose protocol
        # places nothing of these studies.
        await add_protocol(api.services.sessions, "ct-right", "user", "hp-user", 1, 2,
                           [Rule(2, modality="CT")])
        await add_protocol(api.services.sessions, "mr-only", "user", "hp-nothing", 1, 2,
                           [Rule(1, modality="MR")])
        yield api


@dataclass
class Session:
    """A browser page on a token's viewer, with what it asked of the network."""

    page: Page
    origin: str
    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)

    def foreign_requests(self) -> list[str]:
        """Requests that went anywhere but the node (the browser's own PDF viewer, an extension
        built into Chromium, is no network request)."""
        return [url for url in self.requests if not url.startswith(
            (self.origin + "/", "data:", "blob:", "chrome-extension://", "chrome://"))]

    async def close(self) -> None:
        await self.page.context.close()



async def open_url(api: Api, browser: Browser, path: str, keep_bodies: bool = False,
                   size: tuple[int, int] = (1600, 900)) -> Session:
    page = await new_page(browser, *size)
    origin = str(api.client.make_url("/")).rstrip("/")
    opened = Session(page, origin)

    def on_request(request: Request) -> None:
        opened.requests.append(request.url)

    def on_console(message: ConsoleMessage) -> None:
        opened.console.append(message.text)

    async def on_response(response: Response) -> None:
        kind = response.headers.get("content-type", "")
        if kind.startswith(("text/", "application/json", "application/dicom+json")):
            # A redirect or an aborted request has no body.
            with contextlib.suppress(PlaywrightError):
                opened.bodies.append(await response.text())

    page.on("request", on_request)
    page.on("console", on_console)
    if keep_bodies:
        page.on("response", on_response)
    await page.goto(origin + path)
    return opened


async def open_token(api: Api, browser: Browser, params: dict[str, Any],
                     options: dict[str, Any] | None = None, keep_bodies: bool = False,
                     size: tuple[int, int] = (1600, 900)) -> Session:
    token = await api.token({**BASE, **params})
    if options:
        await api.set_options(token, options)
    return await open_url(api, browser, f"/ngv?q={token}", keep_bodies, size)


async def first_image(opened: Session) -> dict[str, float]:
    """Wait for the first image, then measure the viewport as drawn on screen (WebGL canvases
    cannot be read back from a script)."""
    await opened.page.wait_for_function(DRAWN, timeout=60_000)
    await opened.page.wait_for_timeout(300)
    png = await opened.page.locator(VIEWPORT).first.screenshot()
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
    return {"mean": float(pixels.mean()), "std": float(pixels.std())}


async def test_token_opens_ohif_and_draws_the_first_image_from_the_node_alone(
        api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": CT.study_uid})
    stats = await first_image(opened)
    assert stats["std"] > 20, stats
    page = opened.page
    assert page.url.startswith(f"{opened.origin}/viewer/viewer?StudyInstanceUIDs={CT.study_uid}")
    await screenshot(page, "ohif-first-image")
    assert opened.foreign_requests() == []
    assert [m for m in opened.console if "Content Security Policy" in m] == []
    # No investigational-use dialog, no onboarding tour over the image.
    assert await page.locator(".shepherd-element").count() == 0
    assert "investigational" not in (await page.text_content("body") or "").lower()
    await opened.close()


async def test_the_banner_names_the_patient(api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": CT.study_uid})
    await first_image(opened)
    text = await opened.page.text_content("body") or ""
    assert "ZEBRAWSKI, ODALYS" in text and PATIENT in text
    await opened.close()


async def test_a_session_cannot_read_another_patients_study(api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": CT.study_uid})
    await first_image(opened)
    request = opened.page.request
    base = f"{opened.origin}/dicom-web/studies/{OTHER.study_uid}"
    for path in ("/series", "/metadata", "/series/x/metadata".replace("x", uid(1))):
        response = await request.get(base + path)
        assert response.status == 403, path
    response = await request.get(f"{opened.origin}/dicom-web/studies",
                                 params={"PatientID": OTHER.patient_id})
    assert response.status == 204
    assert OTHER.patient_name.split("^")[0] not in "".join(opened.bodies)
    await opened.close()


async def test_anonymized_session_shows_and_receives_no_identifiers(
        api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": CT.study_uid, "anonymize": "true",
                                             "hideDocuments": "false"}, keep_bodies=True)
    await first_image(opened)
    await screenshot(opened.page, "ohif-anonymized")
    # The report too: its observer is a person.
    await opened.page.locator(STUDY_BROWSER).get_by_text("Radiology report").dblclick()
    await opened.page.wait_for_function(
        "() => document.body.textContent.includes('No focal lesion of the liver.')")
    await opened.page.wait_for_timeout(300)
    dom = await opened.page.content()
    title = await opened.page.title()
    assert len(opened.bodies) >= 3
    for secret in SECRETS:
        assert secret not in dom, secret
        assert secret not in title, secret
        for body in opened.bodies:
            assert secret not in body, secret
    await opened.close()


async def test_history_lists_the_patients_other_studies_newest_first(
        api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": CT.study_uid})
    await first_image(opened)
    await opened.page.wait_for_function(
        "() => document.body.textContent.includes('CT THORAX PRIOR')")
    text = await opened.page.text_content(STUDY_BROWSER) or ""
    assert text.index("10-May-2024") < text.index("05-Jan-2023")
    assert OTHER.study_description not in text
    await screenshot(opened.page, "ohif-history")
    await opened.close()


async def test_a_prior_compares_side_by_side_in_one_window(api: Api, browser: Browser) -> None:
    """The reader's own comparison: a 1x2 layout, the prior from the history in the second
    viewport, both drawn from the node in the one window."""
    opened = await open_token(api, browser, {"studyUID": CT.study_uid})
    await first_image(opened)
    page = opened.page
    await page.locator("[data-cy='Layout']").click()
    await page.locator("[data-cy='Layout-1-0']").click()
    await page.wait_for_function(
        "() => document.querySelectorAll(`[data-cy='viewport-pane']`).length === 2")
    await page.locator(VIEWPORT).nth(1).click()
    await page.locator(STUDY_BROWSER).get_by_text(PRIOR.study_description).click()
    await page.locator(STUDY_BROWSER).locator(
        "[data-cy='study-browser-thumbnail']").nth(1).dblclick()
    await page.wait_for_function(
        "() => [...document.querySelectorAll(`[data-cy='viewport-overlay-top-left']`)]"
        ".map((o) => o.textContent).join('|').includes('05-Jan-2023')", timeout=60_000)
    await page.wait_for_function(f"() => ({DRAWN_VIEWPORTS})().every(Boolean)",
                                 timeout=60_000)
    dates = await page.locator("[data-cy='viewport-overlay-top-left']").all_text_contents()
    assert ["10-May-2024" in dates[0], "05-Jan-2023" in dates[1]] == [True, True], dates
    await screenshot(page, "ohif-prior-side-by-side")
    assert opened.foreign_requests() == []
    await opened.close()


async def test_collapse_previews_starts_with_the_study_browser_closed(
        api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": CT.study_uid},
                              options={"collapsePreviews": True})
    await first_image(opened)
    await screenshot(opened.page, "ohif-collapsed")
    assert not await opened.page.locator(STUDY_BROWSER).is_visible()
    await opened.close()
    opened = await open_token(api, browser, {"studyUID": CT.study_uid})
    await first_image(opened)
    assert await opened.page.locator(STUDY_BROWSER).is_visible()
    await opened.close()


async def test_documents_are_absent_by_default(api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": CT.study_uid})
    await first_image(opened)
    await opened.page.wait_for_function(
        "() => document.body.textContent.includes('CT THORAX PRIOR')")
    listed = await opened.page.text_content(STUDY_BROWSER) or ""
    assert "AXIAL 5mm" in listed
    assert "Radiology report" not in listed and "wrapped pdf" not in listed
    await opened.close()


async def test_documents_open_in_ohif_when_allowed(api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": CT.study_uid, "hideDocuments": "false"})
    await first_image(opened)
    page = opened.page
    browser_panel = page.locator(STUDY_BROWSER)
    await browser_panel.get_by_text("Radiology report").dblclick()
    await page.wait_for_function(
        "() => document.body.textContent.includes('No focal lesion of the liver.')",
        timeout=30_000)
    assert "12.5" in (await page.text_content(VIEWPORT) or "")
    await screenshot(page, "ohif-documents-sr")
    await browser_panel.get_by_text("wrapped pdf").dblclick()
    document = page.locator(f"{VIEWPORT} :is(object, iframe, embed)")
    await document.wait_for(timeout=30_000)
    # Headless Chromium has no PDF plug-in to draw it: the document's own bytes are checked.
    source = await document.evaluate("(e) => e.data || e.src")
    assert await page.evaluate(PDF_MAGIC, source) == "%PDF"
    await screenshot(page, "ohif-documents-pdf")
    assert opened.foreign_requests() == []
    await opened.close()


async def test_without_search_there_is_no_study_list(api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": CT.study_uid})
    await first_image(opened)
    await opened.page.goto(f"{opened.origin}/viewer/")
    await opened.page.wait_for_selector("text=Error (404)")
    assert await opened.page.locator("[data-cy='study-list-results']").count() == 0
    await opened.close()


async def test_with_search_the_study_list_searches_the_node_and_opens_another_patient(
        api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": CT.study_uid, "hideSearch": "false"})
    await first_image(opened)
    page = opened.page
    await page.goto(f"{opened.origin}/viewer/")
    await page.wait_for_selector(f"text={OTHER.study_description}")
    await screenshot(page, "ohif-study-list")
    await page.get_by_text(OTHER.study_description).click()
    await page.get_by_role("button", name="Basic Viewer").click()
    await page.wait_for_url(f"**/viewer/viewer?StudyInstanceUIDs={OTHER.study_uid}*")
    stats = await first_image(opened)
    assert stats["std"] > 10, stats
    banner = await page.text_content("body") or ""
    assert "QUILLFEATHER, BARNABY" in banner and "ZEBRAWSKI" not in banner
    await screenshot(page, "ohif-study-list-opened-another-patient")
    assert opened.foreign_requests() == []
    await opened.close()


async def draw_length(page: Page) -> None:
    """A length across the middle of the first viewport, then the measurement panel open."""
    await page.locator("[data-cy='Length']").click()
    await drag_across_viewport(page)
    await page.locator(MEASUREMENTS_BUTTON).click()
    await page.get_by_role("button", name="Delete").wait_for()



async def drag_across_viewport(page: Page) -> None:
    """A drag of the active tool across the middle of the first viewport."""
    box = await page.locator(VIEWPORT).first.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await page.mouse.move(x - 60, y)
    await page.mouse.down()
    await page.mouse.move(x + 60, y + 30, steps=8)
    await page.mouse.up()


async def test_tools_the_role_does_not_allow_are_absent(api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": CT.study_uid})
    await first_image(opened)
    assert await opened.page.locator("[data-cy='Capture']").count() == 1
    await opened.close()
    opened = await open_token(api, browser, {"studyUID": CT.study_uid, "role": READER})
    await first_image(opened)
    assert await opened.page.locator("[data-cy='Capture']").count() == 0
    assert await opened.page.locator("[data-cy='Zoom']").count() == 1
    # Neither download (CSV) nor save (Create SR) in the measurement panel.
    await draw_length(opened.page)
    for action in ("CSV", "Create SR"):
        assert not await opened.page.get_by_role("button", name=action).is_visible(), action
    assert await opened.page.get_by_role("button", name="Delete").is_visible()
    await screenshot(opened.page, "ohif-reader-role")
    await opened.close()


async def test_segmentation_exports_are_absent_without_download(
        api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": CT.study_uid, "role": READER})
    await first_image(opened)
    page = opened.page
    await page.goto(f"{opened.origin}/viewer/segmentation?StudyInstanceUIDs={CT.study_uid}")
    await first_image(opened)
    await page.locator("[data-cy='addSegmentation']").click()
    await page.locator("[data-cy='segmentation-collapsed-more-btn-Labelmap']").click()
    await page.get_by_role("menuitem", name="Rename").wait_for()
    # OHIF draws the Export submenu (CSV Report, DICOM SEG, DICOM RTSS); the page hides it.
    export = page.locator("[role='menu'] [role='menuitem']", has_text="Export")
    await export.wait_for(state="hidden", timeout=5_000)
    assert await export.count() == 1
    await screenshot(page, "ohif-reader-segmentation-menu")
    await opened.close()


async def test_two_monitors_open_the_current_study_and_the_priors_side_by_side(
        api: Api, browser: Browser) -> None:
    answer = await api.get("/ngv/multimonitor-api", {
        **BASE, "patientID": PATIENT, "numberOfMonitors": "2", "idIssuer": "NONE",
        "studyInstanceUID": CT.study_uid})
    urls = await answer.json()
    primary = await open_url(api, browser, urls["primaryMonitorRelativeUrl"])
    await first_image(primary)
    assert f"StudyInstanceUIDs={CT.study_uid}" in primary.page.url
    await primary.close()
    secondary = await open_url(api, browser, urls["secondaryMonitorRelativeUrl"])
    page = secondary.page
    await page.wait_for_function(
        "() => document.querySelectorAll(`[data-cy='viewport-pane']`).length === 2")
    await page.wait_for_function(
        "() => [...document.querySelectorAll(`[data-cy='viewport-overlay-bottom-left']`)]"
        ".filter((o) => o.textContent.includes('W:')).length === 2", timeout=60_000)
    await page.wait_for_timeout(300)
    dates = await page.locator("[data-cy='viewport-overlay-top-left']").all_text_contents()
    assert ["05-Jan-2023" in dates[0], "05-Jan-2022" in dates[1]] == [True, True], dates
    assert CT.study_uid not in page.url
    assert not any(f"/studies/{CT.study_uid}/series/" in url for url in secondary.requests)
    await screenshot(page, "ohif-secondary-priors")
    await secondary.close()


BACKGROUND_JS = """() => getComputedStyle(document.body).backgroundColor
  .match(/\\d+/g).slice(0, 3).map(Number)"""


async def expire(api: Api, token: str) -> None:
    async with api.services.sessions() as session:
        await session.execute(update(ViewingContext).where(
            ViewingContext.token_hash == token_key(token)).values(
                expires_at=datetime.now(UTC) - timedelta(minutes=1)))
        await session.commit()


@pytest.mark.parametrize(("outcome", "status", "said"), [
    ("used", 403, "already been used"), ("expired", 403, "expired"),
    ("revoked", 403, "revoked"), ("unknown", 404, "not valid")])
async def test_a_refused_link_gets_a_dark_page_that_says_why_and_what_to_do(
        api: Api, browser: Browser, outcome: str, status: int, said: str) -> None:
    token = await api.token({**BASE, "studyUID": CT.study_uid})
    if outcome == "used":
        first = await open_url(api, browser, f"/ngv?q={token}")
        await first.close()
    elif outcome == "expired":
        await expire(api, token)
    elif outcome == "revoked":
        await revoke_token(api.services, token)
    elif outcome == "unknown":
        token = "0" * 64
    page = await new_page(browser)
    response = await page.goto(str(api.client.make_url(f"/ngv?q={token}")))
    assert response is not None and response.status == status
    text = await page.text_content("body") or ""
    assert said in text
    assert "calling application" in text or "new link" in text
    assert "ZEBRAWSKI" not in text and PATIENT not in text and CT.study_uid not in text
    red, green, blue = await page.evaluate(BACKGROUND_JS)
    assert max(red, green, blue) < 40, (red, green, blue)
    await screenshot(page, f"ohif-refused-{outcome}")
    await page.context.close()


async def set_retrieval_state(api: Api, token: str, state: str) -> None:
    """What the retrieval machinery writes of the token's studies (node/viewing/retrievals.py)."""
    async with api.services.sessions() as session:
        context = select(ViewingContext.id).where(
            ViewingContext.token_hash == token_key(token)).scalar_subquery()
        await session.execute(update(ContextStudy).where(
            ContextStudy.context_pk == context).values(state=state))
        await session.commit()


async def test_a_study_still_being_retrieved_gets_a_waiting_page_then_opens(
        api: Api, browser: Browser) -> None:
    token = await api.token({**BASE, "studyUID": PRIOR_2.study_uid})
    await set_retrieval_state(api, token, "retrieving")
    opened = await open_url(api, browser, f"/ngv?q={token}")
    page = opened.page
    await page.get_by_text("being retrieved").wait_for()
    text = await page.text_content("body") or ""
    assert "ZEBRAWSKI" not in text and PATIENT not in text
    red, green, blue = await page.evaluate(BACKGROUND_JS)
    assert max(red, green, blue) < 40
    await screenshot(page, "ohif-waiting-for-retrieval")
    await set_retrieval_state(api, token, "available")
    stats = await first_image(opened)
    assert stats["std"] > 10, stats
    assert f"StudyInstanceUIDs={PRIOR_2.study_uid}" in page.url
    assert [m for m in opened.console if "Content Security Policy" in m] == []
    await opened.close()


async def test_the_viewer_without_a_session_is_the_dark_refusal_page(
        api: Api, browser: Browser) -> None:
    page = await new_page(browser)
    response = await page.goto(str(api.client.make_url(
        f"/viewer/viewer?StudyInstanceUIDs={CT.study_uid}")))
    assert response is not None and response.status == 401
    assert "No viewer session" in (await page.text_content("body") or "")
    red, green, blue = await page.evaluate(BACKGROUND_JS)
    assert max(red, green, blue) < 40
    await page.context.close()


async def test_frames_of_a_video_asked_uncompressed_are_not_acceptable(api: Api) -> None:
    """What OHIF asked of the video series: a 406 that says how to ask, never a 500."""
    instance = (f"/dicom-web/studies/{CT.study_uid}/series/{CT.study_uid}.41/instances/"
                f"{CT.study_uid}.41.1")
    response = await api.get(f"{instance}/frames/1", headers={
        "Accept": "multipart/related; type=application/octet-stream"})
    assert response.status == 406
    assert (await response.json())["field"] == "transfer-syntax"


OVERLAY = "[data-cy='viewport-overlay-bottom-{}']"


async def test_scrolling_and_window_level_draw_without_asking_the_node(
        api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": CT.study_uid})
    before = await first_image(opened)
    page = opened.page
    frames = f"/studies/{CT.study_uid}/series/{CT.study_uid}.1/instances/"
    # Every frame of the stack fetched once (OHIF loads the whole stack ahead).
    await page.wait_for_function(
        "([count, part]) => performance.getEntriesByType('resource')"
        ".filter((e) => e.name.includes(part)).length >= count", arg=[SLICES, frames],
        timeout=30_000)
    asked = len(opened.requests)
    box = await page.locator(VIEWPORT).bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await page.mouse.move(x, y)
    for _ in range(5):
        await page.mouse.wheel(0, 120)
    await page.wait_for_function(
        f"() => document.querySelector(\"{OVERLAY.format('right')}\").textContent"
        f".includes('(6/{SLICES})')")
    await page.mouse.down()
    await page.mouse.move(x + 150, y + 80, steps=6)
    await page.mouse.up()
    await page.wait_for_function(
        f"() => !document.querySelector(\"{OVERLAY.format('left')}\").textContent"
        ".includes('W: 400 L: 40') && !document.querySelector("
        f"\"{OVERLAY.format('left')}\").textContent.includes('W:400')")
    after = await first_image(opened)
    assert abs(after["mean"] - before["mean"]) > 1 or abs(after["std"] - before["std"]) > 1
    assert [url for url in opened.requests[asked:] if "/dicom-web/" in url] == []
    await screenshot(page, "ohif-scrolled-and-windowed")
    await opened.close()


async def test_a_study_the_node_does_not_have_says_so(api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": uid(8399)})
    await opened.page.wait_for_selector(
        "text=One or more of the requested studies are not available", timeout=30_000)
    await screenshot(opened.page, "ohif-study-not-found")
    await opened.close()


DRAWN_VIEWPORTS = ("() => [...document.querySelectorAll(`[data-cy='viewport-pane']`)].map((v) =>"
                   " !!v.querySelector(`[data-cy='viewport-overlay-bottom-left']`)"
                   " && v.textContent.includes('W:'))")


async def test_the_users_hanging_protocol_lays_out_the_study(api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": CT.study_uid, "username": "hp-user"})
    page = opened.page
    await page.wait_for_function(f"() => ({DRAWN_VIEWPORTS})().length === 2", timeout=60_000)
    await page.wait_for_function(f"() => ({DRAWN_VIEWPORTS})()[1]", timeout=60_000)
    assert await page.evaluate(DRAWN_VIEWPORTS) == [False, True]
    await screenshot(page, "ohif-protocol-ct-right")
    await opened.close()


async def test_a_protocol_that_places_nothing_leaves_ohifs_default(
        api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": CT.study_uid,
                                             "username": "hp-nothing"})
    await first_image(opened)
    assert await opened.page.evaluate(DRAWN_VIEWPORTS) == [True]
    await opened.close()


async def test_a_video_series_opens_as_a_video_read_from_rendered(
        api: Api, browser: Browser) -> None:
    """The test video is a synthetic MP4 (no decodable picture): what is checked is that OHIF
    shows the series as a video and reads the stream from the node's /rendered, as MP4."""
    opened = await open_token(api, browser, {"studyUID": CT.study_uid})
    await first_image(opened)
    page = opened.page
    rendered = f"/instances/{CT.study_uid}.41.1/rendered"
    async with page.expect_response(lambda r: r.url.endswith(rendered)) as waited:
        await page.locator(STUDY_BROWSER).get_by_text("wrapped mp4").dblclick()
    response = await waited.value
    # 206: the browser's media player asks for ranges, as it does for a video.
    assert response.status in (200, 206) and response.headers["content-type"] == "video/mp4"
    assert (await response.body())[4:8] == b"ftyp"
    await page.wait_for_function(
        f"() => document.querySelector(`{VIEWPORT}`).textContent.includes('wrapped mp4')")
    await opened.close()


async def test_an_anonymized_session_gets_no_video_that_may_show_a_name(
        api: Api, browser: Browser) -> None:
    opened = await open_token(api, browser, {"studyUID": CT.study_uid, "anonymize": "true"})
    await first_image(opened)
    response = await opened.page.request.get(
        f"{opened.origin}/dicom-web/studies/{CT.study_uid}/series/{CT.study_uid}.41/instances/"
        f"{CT.study_uid}.41.1/rendered")
    assert response.status == 403
    await opened.close()
