"""Encapsulated documents as a hostile sender writes them: an Encapsulated PDF instance whose
MIME type says text/html and whose bytes are a page with a script, and one that says PDF but is
not. Over HTTP (what DICOMweb serves of them, with which headers) and in Chromium (OHIF shows
a real PDF; the hostile page's script never runs in the node's origin).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientResponse
from playwright.async_api import Browser, Page
from pydicom import dcmread

from tests.browser import browser, screenshot
from tests.factory import StudySpec, uid
from tests.rest_support import ROLE, Api, running_app
from tests.test_ohif_browser import STUDY_BROWSER, VIEWPORT, first_image, open_token
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
# What OHIF's document viewport shows, as the browser holds it: its type and first bytes.
SHOWN_JS = """async (element) => {
  const blob = await (await fetch(element.data || element.src)).blob();
  const bytes = new Uint8Array(await blob.arrayBuffer());
  return [blob.type, String.fromCharCode(...bytes.slice(0, 5))];
}"""

# The document's element has loaded what it shows (a page of the node's origin, or a PDF).
LOADED_JS = """(element) => !element.contentDocument
  || element.contentDocument.readyState === 'complete'"""


def bulkdata_path(series: int) -> str:
    """DICOMweb's bulk data URI of the instance's Encapsulated Document (0042,0011)."""
    series_uid = f"{STUDY.study_uid}.{series}"
    return (f"/dicom-web/studies/{STUDY.study_uid}/series/{series_uid}/instances/"
            f"{series_uid}.1/bulkdata/00420011")


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


@pytest.mark.parametrize("series", [PDF, HOSTILE, MISLABELLED],
                         ids=["pdf", "text-html", "says-pdf"])
async def test_a_document_is_served_as_octets_in_its_own_sandbox(api: Api, series: int) -> None:
    """Whatever the document says it is, a browser that opens its bulk data URI gets bytes it
    never renders in the node's origin."""
    response = await api.client.get(bulkdata_path(series), headers={
        **await session(api), "Accept": "application/octet-stream"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    body = await response.read()
    assert body.startswith(b"%PDF-") if series == PDF else body.rstrip(b"\0") == HOSTILE_PAGE
    assert_sandboxed(response)


@pytest.mark.parametrize(("series", "told"), [
    (PDF, "application/pdf"), (HOSTILE, "application/octet-stream"),
    (MISLABELLED, "application/pdf")], ids=["pdf", "text-html", "says-pdf"])
async def test_metadata_names_no_document_type_a_browser_would_run(api: Api, series: int,
                                                                    told: str) -> None:
    """A viewer hands the document to the browser as the type the metadata names: a sender's
    text/html is told as octets (a PDF that is not one stays a PDF: the PDF viewer shows
    nothing of it, and runs nothing)."""
    series_uid = f"{STUDY.study_uid}.{series}"
    response = await api.client.get(
        f"/dicom-web/studies/{STUDY.study_uid}/series/{series_uid}/metadata",
        headers={**await session(api), "Accept": "application/dicom+json"})
    assert response.status == 200
    [instance] = await response.json()
    assert instance["00420012"]["Value"] == [told]


async def test_pages_and_errors_carry_a_policy_and_nosniff(api: Api) -> None:
    refused = await api.client.get("/ngv/viewer")
    unknown = await api.client.get("/ngv", params={"q": "0" * 64})
    for response in (refused, unknown):
        assert response.content_type == "text/html"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    error = await api.client.get(bulkdata_path(HOSTILE))
    assert error.status == 401 and error.headers["X-Content-Type-Options"] == "nosniff"


async def assert_nothing_ran(page: Page) -> None:
    state = await page.evaluate(
        "() => [document.title, document.body.dataset.pwned, document.body.dataset.stolen]")
    assert state[0] != "pwned" and state[1] is None and state[2] is None, state


@pytest.mark.dialect_neutral  # OHIF asks what the HTTP tests above ask on both databases
@pytest.mark.parametrize(("description", "magic"), [
    ("wrapped pdf", "%PDF-"), ("hostile html", "<!doc"), ("mislabelled", "<!doc")],
    ids=["pdf", "text-html", "says-pdf"])
async def test_ohif_shows_a_pdf_and_a_hostile_documents_script_never_runs(
        api: Api, browser: Browser, description: str, magic: str) -> None:
    opened = await open_token(api, browser, {"studyUID": STUDY.study_uid,
                                             "hideDocuments": "false"})
    await first_image(opened)
    page = opened.page
    await page.locator(STUDY_BROWSER).get_by_text(description).dblclick()
    document = page.locator(f"{VIEWPORT} :is(object, iframe, embed)")
    await document.wait_for(timeout=30_000)
    shown = await document.evaluate(SHOWN_JS)
    assert shown[1] == magic
    if description == "wrapped pdf":
        assert shown[0] == "application/pdf"
    # OHIF gives the document the type the metadata names: never one a browser runs as a page
    # of the node's origin (a sender's text/html is told as octets). Once loaded, nothing of
    # it has run (the page's Content-Security-Policy would also stop an inline script).
    assert shown[0] in ("application/pdf", "application/octet-stream"), shown
    await page.wait_for_function(LOADED_JS, arg=await document.element_handle())
    inner = await document.evaluate("(e) => e.contentDocument && e.contentDocument.title")
    assert inner != "pwned"
    await screenshot(page, f"ohif-document-{description.replace(' ', '-')}")
    await assert_nothing_ran(page)
    await opened.close()
