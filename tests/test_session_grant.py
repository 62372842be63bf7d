"""What a viewer session reads, through the routes that serve OHIF: DICOMweb with the session
cookie and the session's ISO download. The context's studies and its patients' other local
studies, nothing else; anonymize and the role's permissions applied on the server; preloading
(fullPreloadStudy) warms what OHIF reads first.

These rules were first tested on the hand-written viewer's routes (/ngv/api/studies/...),
which OHIF replaced; each now stands on the route that serves it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydicom import dcmread

from node.errors import Conflict
from node.index.instance_queries import series_of_study
from node.render import THUMBNAIL, FrameRenderer, RenderParams
from node.render.renderer import cache_key
from node.render.series_metadata import metadata_folder
from node.render.sop_classes import ENCAPSULATED_PDF
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
    folder = tmp_path_factory.mktemp("session-grant")
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


def instance_path(study: StudySpec, series: int = 1, number: int = 1,
                  in_study: StudySpec | None = None) -> str:
    """DICOMweb's path of an instance (of `study`'s series), asked for under `in_study`."""
    series_uid = f"{study.study_uid}.{series}"
    return (f"/dicom-web/studies/{(in_study or study).study_uid}/series/{series_uid}"
            f"/instances/{series_uid}.{number}")


def iso_path(study: StudySpec) -> str:
    return f"/ngv/api/studies/{study.study_uid}/iso"


async def test_session_routes_need_a_session(api: Api) -> None:
    for path in (f"/dicom-web/studies/{OPEN.study_uid}/series",
                 instance_path(OPEN) + "/frames/1/rendered", iso_path(OPEN)):
        response = await api.client.get(path)
        assert response.status == 401, path
        assert "session" in (await response.json())["error"]


async def test_a_study_outside_the_context_is_403(api: Api) -> None:
    headers = await session(api)
    for path in (f"/dicom-web/studies/{OTHER.study_uid}/series/{OTHER.study_uid}.1/metadata",
                 instance_path(OTHER) + "/frames/1/rendered", iso_path(OTHER)):
        response = await api.client.get(path, headers=headers)
        assert response.status == 403, path


async def test_an_instance_of_another_study_is_404_not_a_way_around(api: Api) -> None:
    headers = await session(api)
    response = await api.client.get(instance_path(OTHER, in_study=OPEN) + "/rendered",
                                    headers=headers)
    assert response.status == 404


async def test_the_patients_other_local_studies_are_listed_and_readable(api: Api) -> None:
    headers = await session(api)
    listed = await api.client.get("/dicom-web/studies", headers=headers)
    uids = [study["0020000D"]["Value"][0] for study in await listed.json()]
    assert sorted(uids) == sorted([OPEN.study_uid, SAME_PATIENT.study_uid])
    response = await api.client.get(instance_path(SAME_PATIENT) + "/rendered", headers=headers)
    assert response.status == 200


@pytest.mark.parametrize(("query", "field"), [
    ({"window": "40"}, "window"), ({"window": "x,1"}, "window"),
    ({"window": "1,2,cubic"}, "window"), ({"window": "1,0"}, "ww"),
    ({"viewport": "wide,tall"}, "viewport"), ({"quality": "0"}, "quality")])
async def test_bad_render_parameters_are_400_naming_them(
        api: Api, query: dict[str, str], field: str) -> None:
    headers = await session(api)
    response = await api.client.get(instance_path(OPEN) + "/rendered", params=query,
                                    headers=headers)
    assert response.status == 400
    assert (await response.json())["field"] == field


async def test_frame_zero_and_documents_are_refused(api: Api) -> None:
    headers = await session(api, hideDocuments="false")
    zero = await api.client.get(instance_path(OPEN) + "/frames/0/rendered", headers=headers)
    assert zero.status == 400
    pdf = await api.client.get(instance_path(OPEN, series=40) + "/rendered", headers=headers)
    assert pdf.status == 422


async def test_anonymized_sessions_get_no_burned_in_pixels_documents_or_downloads(
        api: Api) -> None:
    headers = await session(api, anonymize="true", hideDocuments="false")
    burned = instance_path(OPEN, series=14)
    for path in (burned + "/frames/1", burned + "/rendered", burned + "/thumbnail"):
        response = await api.client.get(path, headers={**headers, "Accept": "*/*"})
        assert response.status == 403, path
    # The PDF's pages carry the patient's name: only pixel data is served as bulk data.
    pdf = await api.client.get(instance_path(OPEN, series=40) + "/bulkdata/00420011",
                               headers=headers)
    assert pdf.status == 403
    assert (await api.client.get(iso_path(OPEN), headers=headers)).status == 403
    listed = await api.client.get("/dicom-web/studies", headers=headers)
    assert "PID-API-1" not in await listed.text()


@pytest.mark.parametrize(("name", "value"), [
    ("PatientName", "QUILL*"), ("00100020", "PID-API-1"), ("PatientBirthDate", "19000101-"),
    ("AccessionNumber", "*")])
async def test_an_anonymized_session_cannot_match_on_identifiers(
        api: Api, name: str, value: str) -> None:
    """Emptied values that still match would answer "is the patient QUILL...?" one query at a
    time: an anonymized session's search on an identifying attribute is refused, naming it."""
    headers = await session(api, anonymize="true")
    for path in ("/dicom-web/studies", f"/dicom-web/studies/{OPEN.study_uid}/series"):
        response = await api.client.get(path, params={name: value}, headers=headers)
        assert response.status == 400, (path, await response.text())
        assert (await response.json())["field"] == name
    # Asking for the attribute back (its value emptied) is no match.
    returned = await api.client.get("/dicom-web/studies", params={"includefield": name},
                                    headers=headers)
    assert returned.status == 200
    assert "PID-API-1" not in await returned.text()


async def test_a_role_without_search_or_download_reads_its_grant_only(api: Api) -> None:
    bare = await session(api, role=VIEWER_ONLY, hideSearch="false", hideDocuments="false")
    found = await api.client.get("/dicom-web/studies", params={"PatientID": "PID-API-2"},
                                 headers=bare)
    assert found.status == 204
    assert (await api.client.get(iso_path(OPEN), headers=bare)).status == 403
    searching = await session(api, hideSearch="false")
    found = await api.client.get("/dicom-web/studies", params={"PatientID": "PID-API-2"},
                                 headers=searching)
    assert [s["0020000D"]["Value"][0] for s in await found.json()] == [OTHER.study_uid]


async def test_iso_download_for_the_session(api: Api) -> None:
    headers = await session(api)
    response = await api.client.get(iso_path(OPEN), headers=headers)
    assert response.status == 200
    assert response.content_type == "application/x-iso9660-image"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="DICOM_') and "QUILL" not in disposition
    body = await response.read()
    assert len(body) == int(response.headers["Content-Length"]) and body[32769:32774] == b"CD001"


async def test_the_iso_of_a_session_hiding_documents_holds_none(api: Api) -> None:
    """hideDocuments hides the study's reports and PDFs from the medium too, not only from
    DICOMweb: the ISO is the same study through another route."""
    hidden = await (await api.client.get(iso_path(OPEN), headers=await session(api))).read()
    shown = await (await api.client.get(
        iso_path(OPEN), headers=await session(api, hideDocuments="false"))).read()
    for document in (b"HOUSE^GREGORY", ENCAPSULATED_PDF.encode()):
        assert document in shown
        assert document not in hidden
    assert f"{OPEN.study_uid}.1.1".encode() in hidden


async def test_full_preload_warms_what_ohif_reads_first(api: Api) -> None:
    """Before OHIF's first request: every series' metadata file made, every instance's file
    read, OHIF's thumbnail (the middle image) rendered; the job counts them."""
    headers = await session(api, fullPreloadStudy=OPEN.study_uid)
    await api.client.app[ISSUER].preloads_done()
    config = api.services.config
    [(outcome,)] = rows(config.data_dir, "SELECT outcome FROM jobs WHERE kind = 'preload' "
                                         "AND key = :k", k=OPEN.study_uid)
    series = await series_of_study(api.services.sessions, OPEN.study_uid)
    assert outcome == f"{len(series)} series' metadata, 7 files read, 2 thumbnails"
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


def test_stored_files_are_untouched_by_rendering(tmp_path: Path) -> None:
    ds = ct_instances(OPEN, 1)[0]
    path = write_all(tmp_path, [ds])[0]
    before = path.read_bytes()
    renderer = FrameRenderer(tmp_path / "cache", workers=1)
    params = RenderParams()
    try:
        renderer.render_blocking(cache_key(ds.SOPInstanceUID, path, params), path, params)
    finally:
        renderer.close()
    assert path.read_bytes() == before and dcmread(path).SOPInstanceUID == ds.SOPInstanceUID
