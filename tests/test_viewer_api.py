"""The viewer's data routes: the session cookie, the context's studies and nothing else,
caching headers, features switched by role and options, preloading and the layout."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from node.errors import Conflict
from node.index.instance_queries import series_of_study
from node.render import THUMBNAIL, VIEW
from node.render.renderer import cache_key
from node.render.series_metadata import metadata_folder
from node.viewing.hanging_protocols import Rule, add_protocol
from node.viewing.roles import add_role
from rest.state import ISSUER
from rest.viewer.viewer_state import RENDERER
from tests.factory import StudySpec, uid
from tests.index_db import rows
from tests.rest_support import ROLE, Api, running_app
from tests.viewer_data import (
    ct_instances,
    photometric_instances,
    sr_instance,
    wrapped_file,
    write_all,
)

OPEN = StudySpec(study_uid=uid(8301), patient_id="PID-API-1", patient_name="QUILLFEATHER^ANA",
                 study_date="20240101", rows=32, columns=32)
SAME_PATIENT = StudySpec(study_uid=uid(8302), patient_id="PID-API-1",
                         patient_name="QUILLFEATHER^ANA", study_date="20200101", rows=32,
                         columns=32)
OTHER = StudySpec(study_uid=uid(8303), patient_id="PID-API-2", patient_name="OTHER^PAT",
                  rows=32, columns=32)
VIEWER_ONLY = "viewer-only"


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    folder = tmp_path_factory.mktemp("viewer-api")
    async with running_app(folder) as api:
        with contextlib.suppress(Conflict):
            await add_role(api.services.sessions, VIEWER_ONLY, [])
        files = write_all(folder / "open", ct_instances(OPEN, 4))
        files += write_all(folder / "same", ct_instances(SAME_PATIENT, 2))
        files += write_all(folder / "other", ct_instances(OTHER, 2))
        burned = photometric_instances(OPEN)["RGB"]
        burned.BurnedInAnnotation = "YES"
        files += write_all(folder / "burned", [burned])
        files += write_all(folder / "sr", [sr_instance(OPEN, doctor="HOUSE^GREGORY")])
        files.append(wrapped_file(folder / "wrapped", "pdf", OPEN, 40))
        for path in files:
            await api.services.ingestor.ingest_copy(path, "import")
        yield api


async def session(api: Api, **params: str) -> dict[str, str]:
    query = {"username": "u", "role": ROLE, "studyUID": OPEN.study_uid, **params}
    _, cookie = await api.redeem(await api.token(query))
    assert cookie is not None
    return {"Cookie": f"ngv_session={cookie}"}


def frame_path(study: str, sop: str, frame: int = 1) -> str:
    return f"/ngv/api/studies/{study}/instances/{sop}/frames/{frame}"


async def series_of(api: Api, headers: dict[str, str], study: str) -> dict[str, Any]:
    response = await api.client.get(f"/ngv/api/studies/{study}/series", headers=headers)
    assert response.status == 200, await response.text()
    result: dict[str, Any] = await response.json()
    return result


def first_ct(study: StudySpec) -> str:
    return f"{study.study_uid}.1.1"


async def test_data_routes_need_a_session(api: Api) -> None:
    for path in ("/ngv/api/studies", f"/ngv/api/studies/{OPEN.study_uid}/series",
                 frame_path(OPEN.study_uid, first_ct(OPEN))):
        response = await api.client.get(path)
        assert response.status == 401, path
        assert "session" in (await response.json())["error"]


async def test_a_study_outside_the_context_is_403(api: Api) -> None:
    headers = await session(api)
    for path in (f"/ngv/api/studies/{OTHER.study_uid}/series",
                 frame_path(OTHER.study_uid, first_ct(OTHER)),
                 f"/ngv/api/studies/{OTHER.study_uid}/iso"):
        response = await api.client.get(path, headers=headers)
        assert response.status == 403, path


async def test_an_instance_of_another_study_is_404_not_a_way_around(api: Api) -> None:
    headers = await session(api)
    response = await api.client.get(frame_path(OPEN.study_uid, first_ct(OTHER)),
                                    headers=headers)
    assert response.status == 404


async def test_the_patients_other_local_studies_are_listed_and_readable(api: Api) -> None:
    headers = await session(api)
    listed = await (await api.client.get("/ngv/api/studies", headers=headers)).json()
    assert [(s["studyInstanceUID"], s["purpose"]) for s in listed["studies"]] == [
        (OPEN.study_uid, "open"), (SAME_PATIENT.study_uid, "history")]
    response = await api.client.get(frame_path(SAME_PATIENT.study_uid, first_ct(SAME_PATIENT)),
                                    headers=headers)
    assert response.status == 200


async def test_series_list_gives_kinds_in_display_order(api: Api) -> None:
    listing = await series_of(api, await session(api), OPEN.study_uid)
    kinds = [(s["number"], s["kind"]) for s in listing["series"]]
    assert kinds == [("1", "image"), ("14", "image"), ("30", "sr"), ("40", "pdf")]
    ct = listing["series"][0]
    assert [i["number"] for i in ct["instances"]] == ["1", "2", "3", "4"]
    assert listing["layout"] == {"protocol": None, "rows": 1, "columns": 1,
                                 "cells": [ct["seriesInstanceUID"]]}


async def test_rendered_frames_carry_etag_and_answer_304(api: Api) -> None:
    headers = await session(api)
    path = frame_path(OPEN.study_uid, first_ct(OPEN), 1)
    first = await api.client.get(path, headers=headers)
    assert first.status == 200 and first.headers["Cache-Control"].startswith("private")
    etag = first.headers["ETag"]
    again = await api.client.get(path, headers={**headers, "If-None-Match": etag})
    assert again.status == 304
    other = await api.client.get(path, params={"wc": "0", "ww": "100"}, headers=headers)
    assert other.headers["ETag"] != etag and other.headers["X-Window"] == "0 100"


@pytest.mark.parametrize(("query", "field"), [
    ({"wc": "40"}, "ww"), ({"ww": "0", "wc": "1"}, "ww"), ({"wc": "x", "ww": "1"}, "wc"),
    ({"format": "gif"}, "format"), ({"size": "99999"}, "size"), ({"quality": "0"}, "quality"),
    ({"voi": "CUBIC", "wc": "1", "ww": "2"}, "voi")])
async def test_bad_render_parameters_are_400_naming_them(
        api: Api, query: dict[str, str], field: str) -> None:
    headers = await session(api)
    response = await api.client.get(frame_path(OPEN.study_uid, first_ct(OPEN)),
                                    params=query, headers=headers)
    assert response.status == 400
    assert (await response.json())["field"] == field


async def test_frame_zero_and_documents_are_refused(api: Api) -> None:
    headers = await session(api)
    zero = await api.client.get(frame_path(OPEN.study_uid, first_ct(OPEN), 0), headers=headers)
    assert zero.status == 400
    pdf = await api.client.get(frame_path(OPEN.study_uid, f"{OPEN.study_uid}.40.1"),
                               headers=headers)
    assert pdf.status == 422


async def test_documents_need_the_documents_feature(api: Api) -> None:
    pdf = f"/ngv/api/studies/{OPEN.study_uid}/instances/{OPEN.study_uid}.40.1/document"
    hidden = await api.client.get(pdf, headers=await session(api))
    assert hidden.status == 403
    shown = await api.client.get(pdf, headers=await session(api, hideDocuments="false"))
    assert shown.status == 200 and shown.content_type == "application/pdf"
    assert (await shown.read()).startswith(b"%PDF-")
    assert "QUILLFEATHER" not in shown.headers.get("Content-Disposition", "")


async def test_sr_is_readable_text_and_hides_names_when_anonymized(api: Api) -> None:
    path = f"/ngv/api/studies/{OPEN.study_uid}/instances/{OPEN.study_uid}.30.1/report"
    plain = await (await api.client.get(path, headers=await session(
        api, hideDocuments="false"))).json()
    assert plain["title"] == "Diagnostic imaging report"
    assert {"level": 0, "label": "Finding", "value": "No focal lesion of the liver.",
            "heading": False} in plain["lines"]
    assert any(line["value"] == "HOUSE GREGORY" for line in plain["lines"])
    hidden = await api.client.get(path, headers=await session(
        api, hideDocuments="false", anonymize="true"))
    assert "HOUSE" not in await hidden.text()


async def test_anonymized_sessions_get_no_burned_in_pixels_pdfs_or_downloads(api: Api) -> None:
    headers = await session(api, anonymize="true", hideDocuments="false")
    burned = await api.client.get(frame_path(OPEN.study_uid, f"{OPEN.study_uid}.14.1"),
                                  headers=headers)
    assert burned.status == 403
    pdf = await api.client.get(
        f"/ngv/api/studies/{OPEN.study_uid}/instances/{OPEN.study_uid}.40.1/document",
        headers=headers)
    assert pdf.status == 403
    iso = await api.client.get(f"/ngv/api/studies/{OPEN.study_uid}/iso", headers=headers)
    assert iso.status == 403
    listed = await api.client.get("/ngv/api/studies", headers=headers)
    assert "PID-API-1" not in await listed.text()
    page = await api.client.get("/ngv/viewer", headers=headers)
    text = await page.text()
    assert "QUILLFEATHER" not in text and "PID-API-1" not in text
    assert 'id="search-open"' not in text and 'id="download-iso"' not in text


async def test_role_permissions_switch_the_buttons_and_routes(api: Api) -> None:
    allowed = await session(api, hideSearch="false", hideDocuments="false")
    text = await (await api.client.get("/ngv/viewer", headers=allowed)).text()
    for button in ("search-open", "download-iso", "documents-toggle"):
        assert f'id="{button}"' in text
    bare = await session(api, role=VIEWER_ONLY, hideSearch="false", hideDocuments="false")
    text = await (await api.client.get("/ngv/viewer", headers=bare)).text()
    for button in ("search-open", "download-iso", "documents-toggle"):
        assert f'id="{button}"' not in text
    search = await api.client.get("/ngv/api/search", params={"patientID": "PID-API-2"},
                                  headers=bare)
    assert search.status == 403
    iso = await api.client.get(f"/ngv/api/studies/{OPEN.study_uid}/iso", headers=bare)
    assert iso.status == 403


async def test_search_finds_local_studies_and_open_adds_them(api: Api) -> None:
    headers = await session(api, hideSearch="false")
    found = await (await api.client.get("/ngv/api/search", params={"patientName": "other"},
                                        headers=headers)).json()
    assert [s["studyInstanceUID"] for s in found["studies"]] == [OTHER.study_uid]
    assert found["studies"][0]["modalities"] == ["CT"]
    path = frame_path(OTHER.study_uid, first_ct(OTHER))
    assert (await api.client.get(path, headers=headers)).status == 403
    opened = await api.client.post("/ngv/api/search/open", headers=headers,
                                   json={"studyInstanceUID": OTHER.study_uid, "source": ""})
    assert opened.status == 200
    assert (await api.client.get(path, headers=headers)).status == 200
    bad = await api.client.post("/ngv/api/search/open", headers=headers,
                                json={"studyInstanceUID": uid(8399), "source": ""})
    assert bad.status == 400


async def test_search_without_keys_is_400(api: Api) -> None:
    headers = await session(api, hideSearch="false")
    response = await api.client.get("/ngv/api/search", headers=headers)
    assert response.status == 400


async def test_iso_download_for_the_session(api: Api) -> None:
    headers = await session(api)
    response = await api.client.get(f"/ngv/api/studies/{OPEN.study_uid}/iso", headers=headers)
    assert response.status == 200
    assert response.content_type == "application/x-iso9660-image"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="DICOM_') and "QUILL" not in disposition
    body = await response.read()
    assert len(body) == int(response.headers["Content-Length"]) and body[32769:32774] == b"CD001"


async def test_full_preload_fills_the_render_cache(api: Api) -> None:
    await session(api, fullPreloadStudy=SAME_PATIENT.study_uid)
    await api.client.app[ISSUER].preloads_done()
    cache = api.client.app[RENDERER].cache
    storage = api.services.storage
    sop = first_ct(SAME_PATIENT)
    path = next(storage.root.rglob(f"{sop}.dcm"))
    assert cache.get(cache_key(sop, path, VIEW)) is not None
    assert cache.get(cache_key(sop, path, THUMBNAIL)) is not None
    assert cache.get(cache_key(f"{SAME_PATIENT.study_uid}.1.2", path.with_name(
        f"{SAME_PATIENT.study_uid}.1.2.dcm"), VIEW)) is not None
    headers = await session(api)
    response = await api.client.get(frame_path(SAME_PATIENT.study_uid, sop), headers=headers)
    assert response.headers["X-Render-Cache"] == "hit"


async def test_full_preload_warms_what_ohif_reads_first(api: Api) -> None:
    """Before OHIF's first request: every series' metadata file made, every instance's file
    read, OHIF's thumbnail (the middle image) rendered; the job counts them."""
    headers = await session(api, fullPreloadStudy=OPEN.study_uid)
    await api.client.app[ISSUER].preloads_done()
    config = api.services.config
    [(outcome,)] = rows(config.data_dir, "SELECT outcome FROM jobs WHERE kind = 'preload' "
                                         "AND key = :k", k=OPEN.study_uid)
    series = await series_of_study(api.services.sessions, OPEN.study_uid)
    assert outcome.startswith(f"{len(series)} series' metadata, 7 files read, "
                              "2 thumbnails;"), outcome
    folder = metadata_folder(config.data_dir)
    files = {uid: folder / uid[-2:] / f"{uid}.json" for uid in series}
    assert all(path.is_file() for path in files.values())
    middle = f"{OPEN.study_uid}.1.3"
    path = next(api.services.storage.root.rglob(f"{middle}.dcm"))
    cache = api.client.app[RENDERER].cache
    assert cache.get(cache_key(middle, path, THUMBNAIL)) is not None
    # OHIF's first metadata request reads the file as it is.
    made = files[f"{OPEN.study_uid}.1"].stat().st_mtime_ns
    response = await api.client.get(
        f"/dicom-web/studies/{OPEN.study_uid}/series/{OPEN.study_uid}.1/metadata",
        headers=headers)
    assert response.status == 200 and len(await response.json()) == 4
    assert files[f"{OPEN.study_uid}.1"].stat().st_mtime_ns == made


async def test_hanging_protocol_places_series_in_its_layout(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("viewer-protocol")
    async with running_app(folder) as api:
        await add_protocol(api.services.sessions, "two-up", "global", "", 1, 2,
                           [Rule(2, modality="CT"), Rule(1, modality="OT")])
        files = write_all(folder / "ct", ct_instances(OPEN, 2))
        files.append(wrapped_file(folder / "png", "png", OPEN, 42))
        for file in files:
            await api.services.ingestor.ingest_copy(file, "import")
        listing = await series_of(api, await session(api), OPEN.study_uid)
        assert listing["layout"] == {
            "protocol": "two-up", "rows": 1, "columns": 2,
            "cells": [f"{OPEN.study_uid}.42", f"{OPEN.study_uid}.1"]}


def test_stored_files_are_untouched_by_rendering(tmp_path: Path) -> None:
    ds = ct_instances(OPEN, 1)[0]
    path = write_all(tmp_path, [ds])[0]
    before = path.read_bytes()
    from node.render import FrameRenderer

    renderer = FrameRenderer(tmp_path / "cache", workers=1)
    try:
        renderer.render_blocking(cache_key(ds.SOPInstanceUID, path, VIEW), path, VIEW)
    finally:
        renderer.close()
    assert path.read_bytes() == before and dcmread(path).SOPInstanceUID == ds.SOPInstanceUID
