"""Encapsulated documents as a hostile sender writes them: an Encapsulated PDF instance whose
MIME type says text/html and whose bytes are a page with a script, and one that says PDF but is
not. Over HTTP (what is served inline, with which headers) and in Chromium (the script never
runs in the viewer's origin, a real PDF is still shown).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientResponse
from playwright.async_api import Browser, Frame, Page
from pydicom import dcmread

from tests.browser import browser, new_page, screenshot
from tests.factory import StudySpec, uid
from tests.rest_support import ROLE, Api, running_app
from tests.test_viewer_browser import goto_old_viewer
from tests.viewer_data import ct_instances, wrapped_file, write_all

__all__ = ["browser"]

STUDY = StudySpec(study_uid=uid(8601), patient_id="PID-DOC-1", patient_name="INKWELL^VERA",
                  rows=32, columns=32)
PDF, HOSTILE, MISLABELLED = 40, 41, 42
HOSTILE_PAGE = b"""<!doctype html><html><head><title>report</title></head><body>
<p id="hostile">hostile</p>
<script>
document.title = "pwned";
try { parent.document.body.dataset.pwned = "1"; } catch (e) {}
fetch("/ngv/api/context").then((r) => r.text()).then((t) => {
  try { parent.document.body.dataset.stolen = String(t.length); } catch (e) {}
});
</script></body></html>
"""


def document_path(series: int) -> str:
    return f"/ngv/api/studies/{STUDY.study_uid}/instances/{STUDY.study_uid}.{series}.1/document"


def hostile_file(folder: Path, series: int, mime: str, payload: bytes, description: str
                 ) -> Path:
    """A wrapped PDF turned into what a hostile sender would C-STORE: same SOP class, its own
    MIME type and bytes."""
    source = wrapped_file(folder / f"source-{series}", "pdf", STUDY, series)
    ds = dcmread(source)
    ds.MIMETypeOfEncapsulatedDocument = mime
    ds.EncapsulatedDocumentLength = len(payload)
    ds.EncapsulatedDocument = payload + (b"\x00" if len(payload) % 2 else b"")
    ds.SeriesDescription = description
    path = folder / f"hostile-{series}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("viewer-documents")
    async with running_app(folder / "node") as api:
        files = write_all(folder / "ct", ct_instances(STUDY, 2))
        files.append(wrapped_file(folder / "pdf", "pdf", STUDY, PDF))
        files.append(hostile_file(folder, HOSTILE, "text/html", HOSTILE_PAGE, "hostile html"))
        files.append(hostile_file(folder, MISLABELLED, "application/pdf", HOSTILE_PAGE,
                                  "mislabelled"))
        for path in files:
            await api.services.ingestor.ingest_copy(path, "import")
        yield api


async def session(api: Api) -> dict[str, str]:
    return await api.session_headers({"username": "u", "role": ROLE,
                                      "studyUID": STUDY.study_uid, "hideDocuments": "false"})


def assert_sandboxed(response: ClientResponse) -> None:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = response.headers["Content-Security-Policy"]
    assert "sandbox" in [part.strip() for part in policy.split(";")], policy
    assert "default-src 'none'" in policy, policy


async def test_a_pdf_is_served_inline_as_a_pdf_in_its_own_sandbox(api: Api) -> None:
    response = await api.client.get(document_path(PDF), headers=await session(api))
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Content-Disposition"].startswith("inline")
    assert (await response.read()).startswith(b"%PDF-")
    assert_sandboxed(response)


@pytest.mark.parametrize("series", [HOSTILE, MISLABELLED], ids=["text-html", "says-pdf"])
async def test_a_document_that_is_not_a_pdf_is_only_an_attachment(
        api: Api, series: int) -> None:
    response = await api.client.get(document_path(series), headers=await session(api))
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert await response.read() == HOSTILE_PAGE
    assert_sandboxed(response)


async def test_pages_and_errors_carry_a_policy_and_nosniff(api: Api) -> None:
    headers = await session(api)
    page = await api.client.get("/ngv/viewer", headers=headers)
    refused = await api.client.get("/ngv/viewer")
    unknown = await api.client.get("/ngv", params={"q": "0" * 64})
    for response in (page, refused, unknown):
        assert response.content_type == "text/html"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    error = await api.client.get(document_path(HOSTILE))
    assert error.status == 401 and error.headers["X-Content-Type-Options"] == "nosniff"


async def open_documents(api: Api, browser: Browser) -> Page:
    token = await api.token({"username": "u", "role": ROLE, "studyUID": STUDY.study_uid,
                             "hideDocuments": "false"})
    page = await new_page(browser, 1280, 800)
    # The token opens OHIF; the hand-written viewer's document panel is on /ngv/viewer.
    await goto_old_viewer(api, page, f"/ngv?q={token}")
    await page.wait_for_selector("#document-list button.document")
    return page


async def assert_nothing_ran(page: Page) -> None:
    state = await page.evaluate(
        "() => [document.title, document.body.dataset.pwned, document.body.dataset.stolen]")
    assert state[0] != "pwned" and state[1] is None and state[2] is None, state


async def test_a_hostile_document_is_offered_as_a_download_not_a_frame(
        api: Api, browser: Browser) -> None:
    page = await open_documents(api, browser)
    await page.locator("#document-list button.document", has_text="hostile html").click()
    link = page.locator("#document-view .document-download a")
    await link.wait_for()
    assert await page.locator("#document-view iframe").count() == 0
    await screenshot(page, "viewer-document-not-a-pdf")
    await assert_nothing_ran(page)
    await page.context.close()


@pytest.mark.parametrize("series", [HOSTILE, MISLABELLED], ids=["text-html", "says-pdf"])
async def test_a_hostile_document_framed_directly_is_downloaded_and_its_script_never_runs(
        api: Api, browser: Browser, series: int) -> None:
    """As the viewer framed every document before: whichever comes first, the download or
    the script's mark on the viewer page."""
    page = await open_documents(api, browser)
    downloaded = asyncio.ensure_future(page.wait_for_event("download"))
    ran = asyncio.ensure_future(page.wait_for_function(
        "() => document.body.dataset.pwned || document.title === 'pwned'"))
    await page.evaluate("""(src) => {
      const frame = document.createElement("iframe");
      frame.src = src;
      document.body.appendChild(frame);
    }""", document_path(series))
    done, pending = await asyncio.wait({downloaded, ran}, timeout=20,
                                       return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    assert ran not in done, "the document's script ran in the viewer's origin"
    assert downloaded in done
    assert downloaded.result().suggested_filename == "document.bin"
    await assert_nothing_ran(page)
    await page.context.close()


async def pdf_viewer_frame(page: Page, seconds: float = 10.0) -> Frame:
    """The frame Chromium's PDF viewer draws into, once the document frame has one."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for frame in page.frames:
            if frame.url.startswith("chrome-extension://") and frame.parent_frame is not None \
                    and frame.parent_frame.url.endswith("/document"):
                return frame
        await asyncio.sleep(0.05)
    raise AssertionError(f"no PDF viewer in {[f.url for f in page.frames]}")


async def test_a_pdf_is_shown_in_the_document_frame(api: Api, browser: Browser) -> None:
    page = await open_documents(api, browser)
    await page.locator("#document-list button.document", has_text="wrapped pdf").click()
    frame = page.locator("#document-view iframe")
    await frame.wait_for()
    assert (await frame.get_attribute("src") or "").endswith(document_path(PDF))
    viewer = await pdf_viewer_frame(page)
    # The toolbar loses its loading mark once the document is drawn (sandboxed as it is).
    await viewer.wait_for_selector("viewer-toolbar#toolbar:not([loading_])", timeout=10_000)
    await screenshot(page, "viewer-document-pdf")
    await assert_nothing_ran(page)
    await page.context.close()
