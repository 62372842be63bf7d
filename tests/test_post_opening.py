"""POST /ngv/v1/obscurl's opening parameters and unknown fields, over HTTP: what a request
lists itself is shown (the spec's PDF opens), the GET options apply with the GET defaults, the
spec's `OpeningParameters` spelling is read, and a field the node does not know is ignored with
one log line while a known field with a wrong value is still a 400 naming it."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

from rest.obscurl_post import IMPORTS
from rest.state import ISSUER
from tests.index_db import rows
from tests.post_examples import example
from tests.rest_support import Api
from tests.source_fixtures import write_spec_files, write_spec_folder
from tests.test_post_obscurl import mapped, opened, post, token_for

__all__ = ["mapped"]  # the fixture, used by name

STUDY = "1.2.826.123.1"
PDF = "1.2.826.123.1.6.1"


def spec_body(volume: Path, name: str, **fields: Any) -> dict[str, Any]:
    """The spec's "files" or "folder" example, its files in the mapped volume, plus `fields`."""
    (write_spec_files if name == "files" else write_spec_folder)(volume)
    return {**example(name), **fields}


async def _document_shown(api: Api, body: dict[str, Any]) -> bool:
    """Post, let the import finish, open the session, and ask its DICOMweb (what OHIF reads)
    for the listed PDF: whether it is there, and then that its document is the PDF."""
    token = await token_for(api, body)
    await api.client.app[IMPORTS].wait_idle()
    response, cookie = await api.redeem(token)
    assert response.status == 302 and cookie is not None
    session = {"Cookie": f"ngv_session={cookie}"}
    found = await api.client.get(f"/dicom-web/studies/{STUDY}/instances",
                                 params={"SOPInstanceUID": PDF}, headers=session)
    if found.status == 204:
        return False
    assert found.status == 200, await found.text()
    series = (await found.json())[0]["0020000E"]["Value"][0]
    document = await api.client.get(
        f"/dicom-web/studies/{STUDY}/series/{series}/instances/{PDF}/bulkdata/00420011",
        headers={**session, "Accept": "application/octet-stream"})
    assert document.status == 200
    assert (await document.read()).startswith(b"%PDF")
    return True


@pytest.mark.parametrize(("opening", "shown"), [
    (None, True),  # the spec's example as written: its PDF opens
    ({"hideDocuments": True}, False),  # asked to hide documents: even a listed one
])
async def test_the_pdf_the_files_example_lists(
    mapped: tuple[Api, Path], opening: dict[str, Any] | None, shown: bool
) -> None:
    api, volume = mapped
    body = spec_body(volume, "files", **({"openingParameters": opening} if opening else {}))
    assert await _document_shown(api, body) is shown


@pytest.mark.parametrize(("name", "shown"), [
    ("files", True),  # lists a PDF itself
    ("folder", False),  # the GET default: documents hidden
])
async def test_documents_are_shown_when_the_request_lists_one(
    mapped: tuple[Api, Path], name: str, shown: bool
) -> None:
    api, volume = mapped
    context = await opened(api, spec_body(volume, name))
    assert context["options"]["hideDocuments"] is not shown
    assert context["features"]["documents"] is shown


async def test_the_get_options_apply_with_the_get_defaults(mapped: tuple[Api, Path]) -> None:
    api, volume = mapped
    names = ("anonymize", "hideSearch", "hideLayers", "annotationVisibility",
             "collapsePreviews")
    defaults = (await opened(api, spec_body(volume, "folder")))["options"]
    assert [defaults[n] for n in names] == [False, True, False, "ALL", False]
    context = await opened(api, spec_body(volume, "folder", openingParameters={
        "anonymize": True, "hideSearch": False, "hideLayers": True,
        "annotationVisibility": "user", "collapsePreviews": True}))
    assert [context["options"][n] for n in names] == [True, False, True, "USER", True]
    assert context["features"]["search"] is True  # the role allows it, hideSearch=false


async def test_an_anonymized_context_shows_no_patient_data_of_the_request(
    mapped: tuple[Api, Path]
) -> None:
    api, volume = mapped
    context = await opened(api, spec_body(volume, "files",
                                          openingParameters={"anonymize": True}))
    text = repr(context)
    for shown in ("DOE^JANE", "PID-123", "AN-123", "19821108", "report-1.pdf"):
        assert shown not in text
    assert context["request"]["studies"] == [{"studyInstanceUID": STUDY}]


async def test_the_specs_opening_parameters_spelling_is_read(mapped: tuple[Api, Path]) -> None:
    api, volume = mapped
    body = spec_body(volume, "folder", OpeningParameters={"collapsePreviews": True})
    assert (await opened(api, body))["options"]["collapsePreviews"] is True
    response = await post(api, {**body, "openingParameters": {"collapsePreviews": False}})
    assert response.status == 400
    assert (await response.json())["field"] == "OpeningParameters"


async def test_unknown_fields_are_ignored_with_one_log_line(
    mapped: tuple[Api, Path], caplog: pytest.LogCaptureFixture
) -> None:
    api, volume = mapped
    body = spec_body(volume, "folder", priority="high",
                     openingParameters={"collapsePreviews": True, "theme": "dark"})
    body["folder"]["recursive"] = True
    caplog.set_level(logging.INFO, logger="node.sources.request")
    context = await opened(api, body)
    assert context["options"]["collapsePreviews"] is True
    assert context["sources"]["import"]["state"] == "done"
    (record,) = [r for r in caplog.records if r.name == "node.sources.request"]
    message = record.getMessage()
    for name in ("folder.recursive", "openingParameters.theme", "priority"):
        assert name in message
    assert "dark" not in message and "high" not in message  # names, never values


@pytest.mark.parametrize(("opening", "field"), [
    ({"anonymize": "yes"}, "openingParameters.anonymize"),
    ({"hideDocuments": 1}, "openingParameters.hideDocuments"),
    ({"annotationVisibility": "SOME"}, "openingParameters.annotationVisibility"),
    ({"fullPreloadStudy": [STUDY, "1.02"]}, "openingParameters.fullPreloadStudy[1]"),
    ({"fullPreloadStudy": 7}, "openingParameters.fullPreloadStudy"),
])
async def test_a_known_field_with_a_wrong_value_is_400_naming_it(
    mapped: tuple[Api, Path], opening: dict[str, Any], field: str
) -> None:
    api, _ = mapped
    response = await post(api, {**example("files"), "openingParameters": opening})
    assert response.status == 400
    assert (await response.json())["field"] == field


async def test_full_preload_study_warms_the_study_once_imported(
    mapped: tuple[Api, Path]
) -> None:
    api, volume = mapped
    context = await opened(api, spec_body(volume, "files", openingParameters={
        "fullPreloadStudy": [STUDY, "1.2.3.4.5"]}))
    assert [s["preload"] for s in context["studies"]] == [True]
    await api.client.app[ISSUER].preloads_done()
    jobs = rows(api.services.config.data_dir,
                "SELECT key, state, outcome FROM jobs WHERE kind = 'preload'")
    assert [(key, state) for key, state, _ in jobs] == [(STUDY, "done")], jobs
    warmed = re.fullmatch(r"(\d+) series' metadata, (\d+) files read, (\d+) thumbnails",
                          jobs[0][2])
    assert warmed is not None and all(int(n) > 0 for n in warmed.groups()), jobs[0][2]


async def test_an_anonymized_context_names_no_file_of_its_import(
    mapped: tuple[Api, Path]
) -> None:
    """A folder's file paths may name the patient (a folder per patient, as archives are
    often laid out): an anonymized context's import progress keeps its counts and leaves out
    where each failure was and its message, which names the file."""
    api, volume = mapped
    body = spec_body(volume, "folder")
    broken = volume / "studies" / "study1" / "DOE^JANE-19821108"
    broken.mkdir()
    (broken / "scan.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00broken")
    shown = (await opened(api, body))["sources"]["import"]
    assert shown["failed"] == 1 and "DOE^JANE" in repr(shown)
    hidden = (await opened(api, {**body, "openingParameters": {"anonymize": True}}))
    assert hidden["sources"]["import"]["failed"] == 1
    assert "DOE^JANE" not in repr(hidden) and "19821108" not in repr(hidden)
