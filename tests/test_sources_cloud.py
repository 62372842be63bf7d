"""Imports from S3 (moto), Wasabi (moto through the endpoint override), Google Cloud Storage
(gcp-storage-emulator), WADO-RS and WADO-URI (Orthanc), and their failures: each reported per
instance, the others still imported."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from node.process.runtime import open_services
from node.services import NodeServices
from node.sources.storage_mapping import MappingTable
from tests.cloud_peers import ServerProcess, gcs, gcs_put, moto, s3_put, service_account_token
from tests.factory import StudySpec, make_instance
from tests.media_files import image_bytes
from tests.peers import OrthancProcess, free_port
from tests.post_examples import example
from tests.source_fixtures import indexed, node_config, run_body

__all__ = ["gcs", "moto"]  # session fixtures, used by name

BUCKET = "zeeromed-imaging-test"
GOOGLE_BUCKET = "o3-bucket-test-performance"
WADO_STUDY = "1.2.826.0.1.8400526.5.8668.5059.20240112"
NO_MAPPINGS = MappingTable([])


def dicom_bytes(spec: StudySpec, series: int = 0, instance: int = 0) -> bytes:
    out = io.BytesIO()
    make_instance(spec, series, instance).save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture(scope="module")
def bucket_objects(moto: ServerProcess) -> dict[str, bytes]:
    objects = {
        "images/image-1.jpg": image_bytes("JPEG"),
        "images/images-1.dcm": dicom_bytes(StudySpec(study_uid="1.2.826.99.5",
                                                     patient_id="S3-FILE")),
    }
    s3_put(moto.url, BUCKET, objects)
    return objects


@pytest.fixture(scope="module")
def wado_study(orthanc: OrthancProcess, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The WADO examples' study on Orthanc: 2 series of 2 instances, the examples' UIDs."""
    spec = StudySpec(study_uid=WADO_STUDY, patient_id="WADO-PID", series=2,
                     instances_per_series=2)
    uids = []
    for s in range(2):
        for i in range(2):
            ds = make_instance(spec, s, i)
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            path = tmp_path_factory.mktemp("wado") / f"{ds.SOPInstanceUID}.dcm"
            path.write_bytes(buffer.getvalue())
            orthanc.upload(path)
            path.unlink()
            uids.append(str(ds.SOPInstanceUID))
    return uids


@pytest.fixture
async def cloud_node(tmp_path: Path, moto: ServerProcess, gcs: ServerProcess
                     ) -> AsyncIterator[NodeServices]:
    config = node_config(tmp_path / "node", cloud={
        "aws_endpoint_url": moto.url, "wasabi_endpoint_url": moto.url,
        "gcs_endpoint_url": gcs.url})
    async with open_services(config) as services:
        yield services


async def served(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("name", ["aws-bucket", "wasabi-bucket"])
async def test_the_s3_examples_import_every_object(
    cloud_node: NodeServices, bucket_objects: dict[str, bytes], name: str
) -> None:
    progress = await run_body(cloud_node, example(name), NO_MAPPINGS)
    assert (progress.done, progress.failed) == (2, 0), progress.failures
    rows = await indexed(cloud_node)
    assert set(rows) == {"1.2.826.123.1.1.1", "1.2.826.123.1.2.1"}
    dicom = rows["1.2.826.123.1.2.1"]
    assert (dicom.patient_id, dicom.study_uid, dicom.series_uid) == (
        "PID-123", "1.2.826.123.1", "1.2.826.123.1.2")
    assert rows["1.2.826.123.1.1.1"].series_uid == "1.2.826.123.1.1.1"
    assert rows["1.2.826.123.1.1.1"].study_description.endswith("-bucket images")


async def test_a_missing_object_fails_alone(
    cloud_node: NodeServices, bucket_objects: dict[str, bytes]
) -> None:
    body = example("aws-bucket")
    body["studies"][0]["series"][0]["instances"][0]["file"] = "images/missing.jpg"
    progress = await run_body(cloud_node, body, NO_MAPPINGS)
    assert (progress.done, progress.failed) == (1, 1)
    failure = progress.failures[0]
    assert failure["where"] == "studies[0].series[0].instances[0].file"
    assert "NoSuchKey (HTTP 404)" in failure["message"]
    assert "tries" not in failure["message"]  # a 404 is not tried again


async def test_an_unreachable_bucket_fails_each_instance_after_retries(tmp_path: Path) -> None:
    config = node_config(tmp_path / "node", cloud={
        "aws_endpoint_url": f"http://127.0.0.1:{free_port()}"}, sources={"fetch_retries": 1})
    async with open_services(config) as services:
        progress = await run_body(services, example("aws-bucket"), NO_MAPPINGS)
    assert (progress.done, progress.failed, progress.state) == (0, 2, "done")
    for failure in progress.failures:
        assert "EndpointConnectionError (after 2 tries)" in failure["message"]


async def test_a_403_from_s3_is_reported_and_never_retried(tmp_path: Path) -> None:
    calls: list[str] = []

    async def refuse(request: web.Request) -> web.Response:
        calls.append(request.path)
        return web.Response(status=403, content_type="application/xml", text=(
            "<?xml version='1.0'?><Error><Code>AccessDenied</Code>"
            "<Message>Access Denied</Message></Error>"))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    runner, url = await served(app)
    try:
        config = node_config(tmp_path / "node", cloud={"aws_endpoint_url": url})
        async with open_services(config) as services:
            progress = await run_body(services, example("aws-bucket"), NO_MAPPINGS)
    finally:
        await runner.cleanup()
    assert (progress.done, progress.failed) == (0, 2)
    assert all("AccessDenied (HTTP 403)" in f["message"] for f in progress.failures)
    assert len(calls) == 2


async def test_the_google_example_imports_with_a_service_account_key(
    cloud_node: NodeServices, gcs: ServerProcess
) -> None:
    gcs_put(gcs.url, GOOGLE_BUCKET, {"images/image-1.jpg": image_bytes("JPEG", mode="L")})
    token, _ = service_account_token()
    progress = await run_body(cloud_node, example("google-bucket", token=token), NO_MAPPINGS)
    assert (progress.done, progress.failed) == (1, 0), progress.failures
    row = (await indexed(cloud_node))["1.2.826.123.1.1.1"]
    assert (row.study_description, row.series_description) == ("Google-bucket images", "Jpeg")


async def test_a_missing_google_object_fails_alone(
    cloud_node: NodeServices, gcs: ServerProcess
) -> None:
    gcs_put(gcs.url, GOOGLE_BUCKET, {"images/image-1.jpg": image_bytes("JPEG")})
    body = example("google-bucket", token=service_account_token()[0])
    series = body["studies"][0]["series"]
    series.append({"seriesInstanceUID": "1.2.826.123.1.9", "instances": [
        {"sopInstanceUID": "1.2.826.123.1.9.1", "file": "images/nothing.jpg",
         "mimeType": "image/jpeg"}]})
    progress = await run_body(cloud_node, body, NO_MAPPINGS)
    assert (progress.done, progress.failed) == (1, 1)
    assert progress.failures[0]["where"] == "studies[0].series[1].instances[0].file"
    assert "NotFound (HTTP 404)" in progress.failures[0]["message"]


async def test_the_wado_rs_example_imports_the_whole_study(
    cloud_node: NodeServices, orthanc: OrthancProcess, wado_study: list[str]
) -> None:
    body = example("wado-rs", url=f"{orthanc.http_url}/dicom-web/")
    progress = await run_body(cloud_node, body, NO_MAPPINGS)
    assert (progress.total, progress.done, progress.failed) == (4, 4, 0), progress.failures
    rows = await indexed(cloud_node)
    assert sorted(rows) == sorted(wado_study)
    assert {r.patient_id for r in rows.values()} == {"WADO-PID"}


async def test_wado_rs_can_fetch_only_the_listed_series_and_instances(
    cloud_node: NodeServices, orthanc: OrthancProcess, wado_study: list[str]
) -> None:
    body = example("wado-rs", url=f"{orthanc.http_url}/dicom-web")
    body["studies"][0]["patientName"] = "FROM^JSON"
    body["studies"][0]["series"] = [
        {"seriesInstanceUID": f"{WADO_STUDY}.1"},
        {"seriesInstanceUID": f"{WADO_STUDY}.2",
         "instances": [{"sopInstanceUID": f"{WADO_STUDY}.2.2"}]},
    ]
    progress = await run_body(cloud_node, body, NO_MAPPINGS)
    assert (progress.done, progress.failed) == (3, 0), progress.failures
    rows = await indexed(cloud_node)
    assert sorted(rows) == [f"{WADO_STUDY}.1.1", f"{WADO_STUDY}.1.2", f"{WADO_STUDY}.2.2"]
    assert {r.patient_name for r in rows.values()} == {"FROM^JSON"}


async def test_the_wado_uri_example_imports_the_listed_instance(
    cloud_node: NodeServices, orthanc: OrthancProcess, wado_study: list[str]
) -> None:
    body = example("wado-uri", url=f"{orthanc.http_url}/wado")
    progress = await run_body(cloud_node, body, NO_MAPPINGS)
    assert (progress.done, progress.failed) == (1, 0), progress.failures
    assert list(await indexed(cloud_node)) == [f"{WADO_STUDY}.1.1"]


async def test_a_wado_uri_instance_the_server_lacks_fails_alone(
    cloud_node: NodeServices, orthanc: OrthancProcess, wado_study: list[str]
) -> None:
    body = example("wado-uri", url=f"{orthanc.http_url}/wado")
    body["studies"][0]["series"][0]["instances"].append(
        {"sopInstanceUID": f"{WADO_STUDY}.1.99"})
    progress = await run_body(cloud_node, body, NO_MAPPINGS)
    assert (progress.done, progress.failed) == (1, 1)
    assert progress.failures[0]["where"] == "studies[0].series[0].instances[1]"
    assert "HTTP 404" in progress.failures[0]["message"]


def proxy_app(target: str, answer: Callable[[web.Request, int], Awaitable[web.Response | None]]
              ) -> web.Application:
    """A DICOMweb server in front of Orthanc whose instance answers `answer` can replace."""
    counter = {"instances": 0}

    async def forward(request: web.Request) -> web.StreamResponse:
        if "/instances/" in request.path:
            counter["instances"] += 1
            replaced = await answer(request, counter["instances"])
            if replaced is not None:
                return replaced
        async with ClientSession() as client, client.get(
                target + request.path_qs, headers={"Accept": request.headers["Accept"]}) as r:
            return web.Response(body=await r.read(), status=r.status,
                                headers={"Content-Type": r.headers["Content-Type"]})

    app = web.Application()
    app.router.add_get("/{tail:.*}", forward)
    return app


async def test_a_wado_server_that_stops_mid_study_fails_the_rest_per_instance(
    tmp_path: Path, orthanc: OrthancProcess, wado_study: list[str]
) -> None:
    async def stop_after_two(request: web.Request, count: int) -> web.Response | None:
        return None if count <= 2 else web.Response(status=503, text="shutting down")

    runner, url = await served(proxy_app(orthanc.http_url, stop_after_two))
    config = node_config(tmp_path / "node", sources={"fetch_concurrency": 1,
                                                     "fetch_retries": 1})
    try:
        async with open_services(config) as services:
            body = example("wado-rs", url=f"{url}/dicom-web/")
            progress = await run_body(services, body, NO_MAPPINGS)
            assert len(await indexed(services)) == 2
    finally:
        await runner.cleanup()
    assert (progress.total, progress.done, progress.failed) == (4, 2, 2)
    for failure in progress.failures:
        assert "HTTP 503" in failure["message"] and "(after 2 tries)" in failure["message"]
        assert failure["sopInstanceUID"] in wado_study
        assert failure["studyInstanceUID"] == WADO_STUDY


async def test_a_transient_wado_error_is_retried_and_succeeds(
    tmp_path: Path, orthanc: OrthancProcess, wado_study: list[str]
) -> None:
    seen: dict[str, int] = {}

    async def fail_first_try(request: web.Request, count: int) -> web.Response | None:
        seen[request.path] = seen.get(request.path, 0) + 1
        return web.Response(status=502) if seen[request.path] == 1 else None

    runner, url = await served(proxy_app(orthanc.http_url, fail_first_try))
    try:
        async with open_services(node_config(tmp_path / "node")) as services:
            progress = await run_body(services, example("wado-rs", url=f"{url}/dicom-web"),
                                      NO_MAPPINGS)
    finally:
        await runner.cleanup()
    assert (progress.done, progress.failed) == (4, 0), progress.failures
    assert sorted(seen.values()) == [2, 2, 2, 2]


async def test_a_wado_rs_study_that_cannot_be_listed_is_one_failure(
    cloud_node: NodeServices, orthanc: OrthancProcess
) -> None:
    body = example("wado-rs", url=f"{orthanc.http_url}/dicom-web/")
    body["studies"][0]["studyInstanceUID"] = "1.2.3.4.5.6.7.404"
    progress = await run_body(cloud_node, body, NO_MAPPINGS)
    assert (progress.total, progress.done, progress.failed) == (1, 0, 1)
    assert progress.failures[0]["where"] == "studies[0]"
    assert progress.failures[0]["studyInstanceUID"] == "1.2.3.4.5.6.7.404"


async def test_credentials_never_reach_the_logs_or_the_progress(
    tmp_path: Path, moto: ServerProcess, bucket_objects: dict[str, bytes],
    orthanc: OrthancProcess, wado_study: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    secrets = ["AKIAVERYSECRETKEY0001", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"]
    header = "Bearer x-pacs-secret-token-0123456789"
    bodies: list[dict[str, Any]] = [
        example("aws-bucket", accessKey=secrets[0], secretAccessKey=secrets[1]),
        example("wado-rs", url=f"{orthanc.http_url}/dicom-web/",
                httpHeaders={"Authorization": header}),
    ]
    bodies[0]["studies"][0]["series"][0]["instances"][0]["file"] = "images/missing.jpg"
    config = node_config(tmp_path / "node", cloud={"aws_endpoint_url": moto.url})
    caplog.set_level(logging.DEBUG)
    async with open_services(config) as services:
        progresses = [await run_body(services, body, NO_MAPPINGS) for body in bodies]
    assert progresses[0].failed == 1 and progresses[1].done == 4
    everything = caplog.text + json.dumps([p.as_json() for p in progresses])
    for secret in [*secrets, header, "x-pacs-secret-token"]:
        assert secret not in everything


def test_wasabi_and_aws_endpoints_follow_the_region_unless_configured() -> None:
    from node.sources.request import parse_request
    from node.sources.s3 import endpoint_for

    wasabi = parse_request(example("wasabi-bucket")).studies[0].storage
    aws = parse_request(example("aws-bucket")).studies[0].storage
    assert wasabi is not None and aws is not None
    assert endpoint_for(wasabi, "", "") == "https://s3.eu-central-1.wasabisys.com"
    assert endpoint_for(wasabi, "", "http://127.0.0.1:9000") == "http://127.0.0.1:9000"
    assert endpoint_for(aws, "", "") is None
    assert endpoint_for(aws, "http://127.0.0.1:9001", "") == "http://127.0.0.1:9001"
