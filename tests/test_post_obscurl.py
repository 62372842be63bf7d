"""POST /ngv/v1/obscurl over HTTP: each of the spec's request bodies as written (its /storage
paths mapped to a test folder, its endpoints pointed at servers on loopback), the token, the
viewing context the viewer reads, refused paths, and secrets kept out of every trace."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse

from node.dimse.server import DicomServer
from node.sources.storage_mapping import add_mapping
from node.viewing.roles import add_role
from pathology.catalogue import locate_slide, slide_metadata
from pathology.slide_opening import open_slide
from rest.obscurl_post import IMPORTS
from tests.cloud_peers import ServerProcess, gcs, gcs_put, moto, s3_put, service_account_token
from tests.factory import StudySpec, make_instance
from tests.index_db import dump, rows
from tests.media_files import image_bytes
from tests.peers import OrthancProcess, dcmtk
from tests.post_examples import example
from tests.rest_support import API_KEY, Api, running_app
from tests.slide_factory import write_mrxs, write_ndpi
from tests.source_fixtures import (
    LOOPBACK_ALLOWED,
    indexed,
    write_spec_files,
    write_spec_folder,
    write_wsi_files,
)

__all__ = ["gcs", "moto"]  # session fixtures, used by name

ROLE = "diagnostic"
TOKEN = re.compile(r"^[0-9a-f]{64}$")
WADO_STUDY = "1.2.826.0.1.8400526.5.8668.5059.20240112"


async def start_api(folder: Path, **sections: dict[str, Any]) -> tuple[Any, Api, Path]:
    """An app whose /storage is mapped to `folder/volume`."""
    manager = running_app(folder, **sections)
    api = await manager.__aenter__()
    await add_role(api.services.sessions, ROLE, ["search", "documents"])
    volume = folder / "volume"
    volume.mkdir(parents=True, exist_ok=True)
    await add_mapping(api.services.sessions, "/storage", str(volume))
    return manager, api, volume


@pytest.fixture
async def mapped(tmp_path: Path) -> AsyncIterator[tuple[Api, Path]]:
    manager, api, volume = await start_api(tmp_path / "app")
    try:
        yield api, volume
    finally:
        await manager.__aexit__(None, None, None)


async def post(api: Api, body: Any, key: str | None = API_KEY) -> ClientResponse:
    headers = {"Authorization": key} if key is not None else {}
    return await api.client.post("/ngv/v1/obscurl", json=body, headers=headers)


async def token_for(api: Api, body: Any) -> str:
    response = await post(api, body)
    text = await response.text()
    assert response.status == 200, text
    assert response.content_type == "text/plain" and TOKEN.match(text)
    return text


async def opened(api: Api, body: Any) -> dict[str, Any]:
    """Post, let the import finish, and read the context as the viewer does."""
    token = await token_for(api, body)
    await api.client.app[IMPORTS].wait_idle()
    return await api.context(token)


async def test_the_folder_example_opens_the_studies_found_in_the_files(
    mapped: tuple[Api, Path]
) -> None:
    api, volume = mapped
    paths = write_spec_folder(volume)
    context = await opened(api, example("folder"))
    progress = context["sources"]["import"]
    assert (progress["state"], progress["done"], progress["failed"], progress["skipped"]) == (
        "done", len(paths), 0, 2)
    studies = {s["studyInstanceUID"]: s for s in context["studies"]}
    assert len(studies) == 2
    assert {s["state"] for s in studies.values()} == {"available"}
    assert {s["patientID"] for s in studies.values()} == {"FOLDER-A", "FOLDER-B"}
    assert context["request"]["folder"] == {"path": "/storage/studies/study1"}
    assert context["options"]["collapsePreviews"] is False


async def test_the_files_example_gives_the_json_priority_also_in_c_find(
    mapped: tuple[Api, Path]
) -> None:
    api, volume = mapped
    write_spec_files(volume)
    context = await opened(api, example("files"))
    (study,) = context["studies"]
    assert (study["studyInstanceUID"], study["state"], study["patientID"]) == (
        "1.2.826.123.1", "available", "PID-123")
    assert context["sources"]["import"]["done"] == 6
    server = DicomServer(api.services)
    server.start()
    try:
        result = await asyncio.to_thread(
            dcmtk, "findscu", "-S", "-aec", "VIEWNODE", "-k", "QueryRetrieveLevel=SERIES",
            "-k", "StudyInstanceUID=1.2.826.123.1", "-k", "SeriesInstanceUID",
            "-k", "PatientName", "-k", "PatientID", "-k", "AccessionNumber", "-k", "Modality",
            "127.0.0.1", str(server.port), timeout=60)
    finally:
        await asyncio.to_thread(server.stop)
    answers = result.stdout + result.stderr
    assert result.returncode == 0, answers
    assert answers.count("DOE^JANE") == 6 and "FILE^NAME" not in answers
    assert "PID-123" in answers and "FILE-PID" not in answers
    assert "AN-123" in answers and "FILE-ACC" not in answers
    assert "[XC]" in answers and "[SR]" in answers


async def test_a_file_that_fails_is_reported_in_the_context(mapped: tuple[Api, Path]) -> None:
    api, volume = mapped
    write_spec_files(volume)
    (volume / "images/image-1.bmp").write_bytes(b"BM not really")
    context = await opened(api, example("files"))
    (study,) = context["studies"]
    assert study["state"] == "available"
    assert study["message"].startswith("1 of 6 instances failed")
    (failure,) = context["sources"]["import"]["failures"]
    assert failure["where"] == "studies[0].series[3].instances[0].file"
    assert "BMP" in failure["message"]


async def test_opening_parameters_reach_the_context(mapped: tuple[Api, Path]) -> None:
    api, volume = mapped
    write_spec_folder(volume)
    body = example("folder")
    body["openingParameters"] = {"collapsePreviews": True}
    context = await opened(api, body)
    assert context["options"]["collapsePreviews"] is True
    assert context["request"]["openingParameters"] == {"collapsePreviews": True}


async def test_the_dicom_wsi_example_records_the_slide_data(mapped: tuple[Api, Path]) -> None:
    api, volume = mapped
    write_wsi_files(volume, levels=2)
    context = await opened(api, example("dicom-wsi"))
    assert context["sources"]["import"]["done"] == 2
    services = api.services
    metadata = await slide_metadata(services.sessions, services.storage, "C231606-1426-A-1-1")
    assert (metadata.specimen_identifier, metadata.block_alias, metadata.slide_stain_code) == (
        "C231606-1426-A", "A-1", "H&E")
    source = await locate_slide(services.sessions, services.storage, "C231606-1426-A-1-1")
    assert source.kind == "dicom" and len(source.paths) == 2


async def test_the_non_dicom_wsi_example_registers_the_slide_file(
    mapped: tuple[Api, Path]
) -> None:
    api, volume = mapped
    (volume / "ndpi").mkdir()
    ndpi = write_ndpi(volume / "ndpi" / "C231606-1426-A-1-A.ndpi")
    context = await opened(api, example("non-dicom-wsi"))
    progress = context["sources"]["import"]
    assert (progress["done"], progress["failed"]) == (1, 0), progress["failures"]
    services = api.services
    source = await locate_slide(services.sessions, services.storage, "C231606-1426-A-1-1")
    assert source.kind == "file" and source.paths == (ndpi,)
    metadata = await slide_metadata(services.sessions, services.storage, "C231606-1426-A-1-1")
    assert metadata.specimen_procedure == "Right lower eyelid"


def _in_bucket(body: dict[str, Any], bucket: str, key: str, kind: str = "aws-bucket"
               ) -> dict[str, Any]:
    """The body's one instance as an object of a bucket (moto, or the GCS emulator)."""
    storage: dict[str, Any] = {"type": kind, "name": bucket}
    if kind == "google-bucket":
        storage["token"] = service_account_token()[0]
    else:
        storage |= {"region": "eu-central-1", "accessKey": "AKIAMRXS",
                    "secretAccessKey": "mrxs-secret"}
    body["studies"][0]["storage"] = storage
    body["studies"][0]["series"][0]["instances"][0]["file"] = key
    return body


@pytest.mark.parametrize("kind", ["aws-bucket", "google-bucket"])
async def test_an_mrxs_slide_in_a_bucket_comes_with_its_data_folder(
    tmp_path: Path, moto: ServerProcess, gcs: ServerProcess, kind: str
) -> None:
    original = write_mrxs(tmp_path / "made" / "case-1.mrxs")
    folder = original.with_suffix("")
    objects = {"slides/case-1.mrxs": original.read_bytes()}
    objects |= {f"slides/case-1/{p.relative_to(folder).as_posix()}": p.read_bytes()
                for p in folder.rglob("*") if p.is_file()}
    # A slide whose name starts alike: its folder must not come along.
    objects["slides/case-10/Slidedat.ini"] = b"[GENERAL]\n"
    if kind == "google-bucket":
        gcs_put(gcs.url, "viewnode-mrxs-test", objects)
    else:
        s3_put(moto.url, "viewnode-mrxs-test", objects)
    body = _in_bucket(example("non-dicom-wsi"), "viewnode-mrxs-test", "slides/case-1.mrxs",
                      kind)
    manager, api, _ = await start_api(tmp_path / "app", cloud={
        "aws_endpoint_url": moto.url, "gcs_endpoint_url": gcs.url})
    try:
        context = await opened(api, body)
        progress = context["sources"]["import"]
        assert (progress["done"], progress["failed"]) == (1, 0), progress["failures"]
        services = api.services
        source = await locate_slide(services.sessions, services.storage, "C231606-1426-A-1-1")
    finally:
        await manager.__aexit__(None, None, None)
    (path,) = source.paths
    assert path.suffix == ".mrxs" and path.read_bytes() == original.read_bytes()
    fetched = path.with_suffix("")
    assert sorted(p.relative_to(fetched).as_posix() for p in fetched.rglob("*")) == sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*"))
    assert not fetched.with_name(f"{fetched.name}.partial").exists()
    with open_slide([path]) as slide, open_slide([original]) as made:
        assert slide.info.format == "mirax"
        assert slide.info.levels == made.info.levels
        assert slide.read_region(0, 0, 0, 256, 256).tobytes() == made.read_region(
            0, 0, 0, 256, 256).tobytes()


async def test_an_mrxs_slide_without_its_data_folder_fails_with_its_reason(
    tmp_path: Path, moto: ServerProcess
) -> None:
    original = write_mrxs(tmp_path / "made" / "alone.mrxs")
    s3_put(moto.url, "viewnode-mrxs-test", {"lonely/alone.mrxs": original.read_bytes()})
    body = _in_bucket(example("non-dicom-wsi"), "viewnode-mrxs-test", "lonely/alone.mrxs")
    manager, api, _ = await start_api(tmp_path / "app", cloud={"aws_endpoint_url": moto.url})
    try:
        context = await opened(api, body)
    finally:
        await manager.__aexit__(None, None, None)
    (failure,) = context["sources"]["import"]["failures"]
    assert failure["where"] == "studies[0].series[0].instances[0].file"
    assert "its data folder lonely/alone/ holds no objects" in failure["message"]
    assert context["studies"][0]["state"] == "failed"


async def test_a_non_dicom_slide_no_reader_accepts_fails_with_its_reason(
    mapped: tuple[Api, Path]
) -> None:
    api, volume = mapped
    (volume / "ndpi").mkdir()
    (volume / "ndpi/C231606-1426-A-1-A.ndpi").write_bytes(b"this is no slide at all")
    context = await opened(api, example("non-dicom-wsi"))
    (failure,) = context["sources"]["import"]["failures"]
    assert failure["where"] == "studies[0].series[0].instances[0].file"
    assert context["studies"][0]["state"] == "failed"


@pytest.mark.parametrize(("path", "message"), [
    ("/elsewhere/image-1.dcm", "outside every storage mapping"),
    ("/storage2/images/image-1.dcm", "outside every storage mapping"),
    ("/storage/images/../../secret/passwd", "'..' is not allowed"),
    ("/storage/escape/passwd", "leads out of its mapped folder"),
    ("/storage/images/nothing.dcm", "file not found: /storage/images/nothing.dcm"),
])
async def test_refused_paths_are_400_naming_the_field_and_nothing_is_read(
    mapped: tuple[Api, Path], path: str, message: str
) -> None:
    api, volume = mapped
    write_spec_files(volume)
    secret = volume.parent / "secret"
    secret.mkdir()
    # A FIFO: opening it would block, so an answer at all shows it was never opened.
    os.mkfifo(secret / "passwd")
    (volume / "escape").symlink_to(secret)
    (volume.parent / "storage2").mkdir()
    body = example("files")
    body["studies"][0]["series"][3]["instances"][0]["file"] = path
    response = await asyncio.wait_for(post(api, body), timeout=30)
    answer = await response.json()
    assert response.status == 400
    assert answer["field"] == "studies[0].series[3].instances[0].file"
    assert message in answer["error"]
    assert await indexed(api.services) == {}
    assert api.services.storage.incoming_files() == []


async def test_a_folder_outside_the_mappings_is_400(mapped: tuple[Api, Path]) -> None:
    api, _ = mapped
    body = example("folder")
    body["folder"]["path"] = "/storage/../etc"
    response = await post(api, body)
    assert response.status == 400 and (await response.json())["field"] == "folder.path"


async def test_bad_bodies_are_400_with_the_field_path(mapped: tuple[Api, Path]) -> None:
    api, _ = mapped
    body = example("files")
    del body["studies"][0]["series"][2]["instances"][0]["file"]
    response = await post(api, body)
    assert response.status == 400
    assert (await response.json())["field"] == "studies[0].series[2].instances[0].file"
    raw = await api.client.post("/ngv/v1/obscurl", data=b"{not json",
                                headers={"Authorization": API_KEY})
    assert raw.status == 400 and (await raw.json())["field"] == "body"
    unknown = example("folder")
    unknown["role"] = "nobody"
    response = await post(api, unknown)
    assert response.status == 400 and (await response.json())["field"] == "role"


async def test_the_api_key_is_required(mapped: tuple[Api, Path]) -> None:
    api, _ = mapped
    assert (await post(api, example("folder"), key=None)).status == 401
    assert (await post(api, example("folder"), key="wrong")).status == 401


async def test_a_body_over_the_limit_is_413(tmp_path: Path) -> None:
    manager, api, _ = await start_api(tmp_path / "app", http={"max_body_bytes": 4096})
    try:
        body = example("files")
        body["studies"][0]["studyDescription"] = "x" * 8000
        response = await post(api, body)
        assert response.status == 413
    finally:
        await manager.__aexit__(None, None, None)


async def test_cloud_and_wado_examples_open_and_keep_no_secret(
    tmp_path: Path, moto: ServerProcess, gcs: ServerProcess, orthanc: OrthancProcess,
    caplog: pytest.LogCaptureFixture
) -> None:
    s3_put(moto.url, "zeeromed-imaging-test", {
        "images/image-1.jpg": image_bytes("JPEG"),
        "images/images-1.dcm": _dicom(StudySpec(study_uid="1.2.826.99.6"))})
    gcs_put(gcs.url, "o3-bucket-test-performance", {"images/image-1.jpg": image_bytes("PNG")})
    for s in range(2):
        _upload(orthanc, tmp_path, make_instance(
            StudySpec(study_uid=WADO_STUDY, patient_id="WADO-PID", series=2), s, 0))
    on_orthanc = len(orthanc.get_json(f"/dicom-web/studies/{WADO_STUDY}/instances"))
    token, private_key = service_account_token()
    secrets = ["AKIA0123SECRETACCESSKEY", "s3cr3t/Access+Key0123456789abcdefGHIJ",
               "x-pacs-api-key-that-is-secret", private_key.splitlines()[1]]
    bodies = {
        "aws-bucket": example("aws-bucket", accessKey=secrets[0], secretAccessKey=secrets[1]),
        "wasabi-bucket": example("wasabi-bucket", accessKey=secrets[0],
                                 secretAccessKey=secrets[1]),
        "google-bucket": example("google-bucket", token=token),
        "wado-rs": example("wado-rs", url=f"{orthanc.http_url}/dicom-web/",
                           httpHeaders={"Authorization": secrets[2]}),
        "wado-uri": example("wado-uri", url=f"{orthanc.http_url}/wado",
                            httpHeaders={"Authorization": secrets[2]}),
    }
    expected = {"aws-bucket": 2, "wasabi-bucket": 2, "google-bucket": 1,
                "wado-rs": on_orthanc, "wado-uri": 1}
    # The Google object is a PNG under a .jpg name: the mimeType, not the name, decides.
    bodies["google-bucket"]["studies"][0]["series"][0]["instances"][0]["mimeType"] = "image/png"
    caplog.set_level(logging.DEBUG)
    manager, api, _ = await start_api(tmp_path / "app", cloud={
        "aws_endpoint_url": moto.url, "wasabi_endpoint_url": moto.url,
        "gcs_endpoint_url": gcs.url}, sources=LOOPBACK_ALLOWED)
    seen = []
    try:
        for name, body in bodies.items():
            response = await post(api, body)
            seen.append(await response.text())
            assert response.status == 200, seen[-1]
            await api.client.app[IMPORTS].wait_idle()
            context = await api.context(seen[-1])
            seen.append(repr(context))
            progress = context["sources"]["import"]
            assert (progress["done"], progress["failed"]) == (expected[name], 0), (name,
                                                                                  progress)
            assert context["request"]["studies"][0]["storage"]["type"] == name
    finally:
        await manager.__aexit__(None, None, None)
    database = dump(tmp_path / "app/data")
    # Sealed while the imports ran, deleted once each was done.
    assert rows(tmp_path / "app/data", "SELECT count(*) FROM sealed_credentials") == [(0,)]
    assert rows(tmp_path / "app/data", "SELECT count(*) FROM jobs WHERE kind = 'post-import' "
                                       "AND state = 'done'") == [(len(bodies),)]
    traces = caplog.text + "".join(seen)
    for secret in secrets:
        assert secret not in traces
        assert secret.encode() not in database


def _dicom(spec: StudySpec) -> bytes:
    out = io.BytesIO()
    make_instance(spec, 0, 0).save_as(out, enforce_file_format=True)
    return out.getvalue()


def _upload(orthanc: OrthancProcess, folder: Path, ds: Any) -> None:
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    try:
        orthanc.upload(path)
    finally:
        path.unlink()
