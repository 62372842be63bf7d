"""Slides opened through POST /ngv/v1/obscurl, in headless Chromium: the token opens the slide
viewer (not OHIF, not "This study has no images") on the slides of the studies the JSON named,
SVS, NDPI, MRXS and TIFF files and a DICOM WSI, while or after they are imported; the banner
shows the JSON's patient and accession, and an anonymized request shows neither.

One app for the module, its /storage mapped to a folder holding one slide of each format.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from node.sources.storage_mapping import add_mapping
from node.viewing.roles import add_role
from pathology.catalogue import register_slide_file
from rest.obscurl_post import IMPORTS
from tests import slide_factory as factory
from tests.browser import browser, new_page, screenshot, wait_until
from tests.post_examples import example
from tests.rest_support import API_KEY, Api, running_app

__all__ = ["browser"]

ROLE = "diagnostic"
READY = "#slide-panel[data-state='ready']"
PATIENT_NAME = "DOE, JANE"
# Each non-DICOM format, by its file under /storage/slides and the slide's containerIdentifier.
FILES = {"svs": "C231606-1426-A-1-1", "ndpi": "C231606-1426-A-1-2",
         "mrxs": "C231606-1426-A-1-3", "tiff": "C231606-1426-A-1-4"}
DICOM_SLIDE = "C231606-1426-B-1-1"
OTHER_SLIDE = "C999999-1-A-1-1"
# How much of the canvas is drawn, and how much it varies: a slide, not a black or flat area.
CANVAS_JS = """() => {
  const canvas = document.querySelector('#slide-osd .openseadragon-canvas canvas');
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0, sum = 0, squares = 0;
  for (let i = 0; i < data.length; i += 4 * 7) {
    if (data[i + 3] < 255) continue;
    const v = data[i] + data[i + 1] + data[i + 2];
    n += 1; sum += v; squares += v * v;
  }
  return {opaque: n, spread: n ? Math.sqrt(squares / n - (sum / n) ** 2) : 0};
}"""


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("viewer-slides-post")
    volume = folder / "volume"
    slides = volume / "slides"
    slides.mkdir(parents=True)
    factory.write_svs(slides / "a.svs")
    factory.write_ndpi(slides / "a.ndpi")
    factory.write_mrxs(slides / "a.mrxs")
    factory.write_tiled_tiff(slides / "a.tiff")
    dicom = factory.write_dicom_wsi(volume / "dicom")
    dicom.paths[0].rename(volume / "dicom" / "C231606-1426-A-1-A.dcm")
    other = factory.write_svs(folder / "other.svs")
    async with running_app(folder / "node") as api:
        await add_role(api.services.sessions, ROLE, ["documents"])
        await add_mapping(api.services.sessions, "/storage", str(volume))
        # Another patient's slide, of another study and case: no session here may read it.
        await register_slide_file(api.services.sessions, api.services.storage, OTHER_SLIDE,
                                  other, study_uid="1.2.826.999.1", accession_number="C999999")
        yield api


def slide_files_body(study_uid: str, **opening: Any) -> dict[str, Any]:
    """The spec's non-DICOM example with one instance per format."""
    body = example("non-dicom-wsi")
    study = body["studies"][0]
    study["studyInstanceUID"] = study_uid
    template = study["series"][0]["instances"][0]
    instances = []
    for number, (suffix, cid) in enumerate(FILES.items(), start=1):
        instance = copy.deepcopy(template)
        instance.update(sopInstanceUID=f"{study_uid}.1.{number}",
                        file=f"/storage/slides/a.{suffix}", containerIdentifier=cid,
                        slideIdentifier=cid, slideAlias=f"A-1-{number}")
        instances.append(instance)
    study["series"][0]["seriesInstanceUID"] = f"{study_uid}.1"
    study["series"][0]["instances"] = instances
    if opening:
        body["openingParameters"] = opening
    return body


def dicom_body(**opening: Any) -> dict[str, Any]:
    body = example("dicom-wsi")
    instance = body["studies"][0]["series"][0]["instances"][0]
    instance.update(containerIdentifier=DICOM_SLIDE, slideIdentifier=DICOM_SLIDE)
    if opening:
        body["openingParameters"] = opening
    return body


async def open_post(api: Api, browser: Browser, body: dict[str, Any]) -> Page:
    """POST, then open the token at once, as the calling application does: the import may
    still be running when the page loads."""
    response = await api.client.post("/ngv/v1/obscurl", json=body,
                                     headers={"Authorization": API_KEY})
    token = await response.text()
    assert response.status == 200, token
    page = await new_page(browser, 1280, 800)
    await page.goto(str(api.client.make_url(f"/ngv?q={token}")))
    return page


async def test_a_post_session_reads_the_slides_of_its_studies_only(api: Api) -> None:
    response = await api.client.post("/ngv/v1/obscurl", json=slide_files_body("1.2.826.123.9"),
                                     headers={"Authorization": API_KEY})
    token = await response.text()
    assert response.status == 200, token
    await api.client.app[IMPORTS].wait_idle()
    redirect, cookie = await api.redeem(token)
    assert redirect.status == 302 and redirect.headers["Location"] == "/ngv/viewer"
    session = {"Cookie": f"ngv_session={cookie}"}
    tray = await (await api.client.get("/ngv/slides", headers=session)).json()
    assert sorted(s["containerIdentifier"] for s in tray["slides"]) == sorted(FILES.values())
    assert (tray["pending"], tray["accessionNumbers"]) == (False, ["C231606-1426"])
    for cid in FILES.values():
        answer = await api.client.get(f"/ngv/slides/{cid}/dz.dzi", headers=session)
        assert answer.status == 200, cid
    for path in ("dz.dzi", "thumbnail.jpeg", "label.jpeg", "layers"):
        answer = await api.client.get(f"/ngv/slides/{OTHER_SLIDE}/{path}", headers=session)
        assert answer.status == 403, path


async def assert_slide_drawn(page: Page, cid: str) -> None:
    await page.wait_for_selector(f"#slide-panel[data-slide='{cid}'][data-state='ready']")
    drawn = await page.evaluate(CANVAS_JS)
    assert drawn["opaque"] > 10_000 and drawn["spread"] > 40, (cid, drawn)


async def test_post_slide_files_open_each_format_under_the_jsons_patient(
        api: Api, browser: Browser) -> None:
    page = await open_post(api, browser, slide_files_body("1.2.826.123.7"))
    assert page.url.split("?")[0].endswith("/ngv/viewer"), page.url
    await page.wait_for_selector("#slide-panel[data-slides='4']")
    buttons = page.locator("#slide-tray button")
    shown = [str(await b.get_attribute("data-slide")) for b in await buttons.all()]
    assert sorted(shown) == sorted(FILES.values())
    for cid in FILES.values():
        await page.click(f"#slide-tray button[data-slide='{cid}']")
        await assert_slide_drawn(page, cid)
    # The import is over once every slide is in: the banner names the JSON's patient.
    await wait_until(page, "() => document.querySelector('#patient .patient-name')"
                     f".textContent === {PATIENT_NAME!r}")
    banner = await page.text_content("header.banner") or ""
    assert "PID-123" in banner and "Accession C231606-1426" in banner, banner
    assert "no images" not in (await page.text_content("body") or "")
    assert await page.is_hidden("#tool-window") and await page.is_hidden("#grid")
    await screenshot(page, "viewer-slide-post-files")
    await page.context.close()


async def test_post_dicom_wsi_opens_its_slide(api: Api, browser: Browser) -> None:
    page = await open_post(api, browser, dicom_body())
    await assert_slide_drawn(page, DICOM_SLIDE)
    assert await page.locator("#slide-tray button").count() == 1
    await wait_until(page, "() => document.querySelector('#patient .patient-name')"
                     f".textContent === {PATIENT_NAME!r}")
    assert "Accession C231606-1426" in (await page.text_content("#case") or "")
    await page.context.close()


async def test_anonymized_post_shows_no_patient_or_accession(api: Api, browser: Browser) -> None:
    page = await open_post(api, browser, slide_files_body("1.2.826.123.8", anonymize=True))
    await page.wait_for_selector("#slide-panel[data-slides='4']")
    await page.wait_for_selector(READY)
    assert await page.text_content("#patient .patient-name") == "Anonymized patient"
    assert await page.is_hidden("#case")
    assert await page.is_hidden("#slide-label-toggle")
    content = await page.content()
    for identifier in ("DOE", "JANE", "PID-123", "C231606"):
        assert identifier not in content, identifier
    await page.context.close()
