"""WADO-RS against the serving node, through dicomweb-client: instances as stored (or converted
on request), metadata with BulkDataURIs, frames by offset, bulk data, rendered images, and what
a viewer session may read."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

from node.config import config_from_dict
from node.process.runtime import WorkerPlace, open_services
from node.render.series_metadata import FOLDER as METADATA_FOLDER
from node.render.series_metadata import MetadataWarmer, SeriesMetadata, metadata_file
from tests.factory import StudySpec, make_instance, uid, write_jpeg_instance, write_study
from tests.peers import NodeProcess, dcmtk
from tests.rest_support import config_dict
from tests.test_dicomweb_qido import session_client, value
from tests.viewer_data import wrapped_file

ROLE = "dicomweb-qido"  # made by the QIDO tests' fixture; both modules use the same node
SPEC = StudySpec(patient_id="WADO-1", patient_name="WADO^PATIENT", study_uid=uid(1960, 1),
                 accession="WADOACC", instances_per_series=3, rows=16, columns=12)
OTHER = StudySpec(patient_id="WADO-2", patient_name="WADO^OTHER", study_uid=uid(1960, 2),
                  instances_per_series=1, rows=8, columns=8)
CT_SERIES = f"{SPEC.study_uid}.1"
MULTIFRAME = f"{SPEC.study_uid}.93.1"
MULTIFRAME_JPEG = f"{SPEC.study_uid}.94.1"
JPEG = f"{SPEC.study_uid}.90.1"
PDF = f"{SPEC.study_uid}.40.1"
PDF_CLASS = "1.2.840.10008.5.1.4.1.1.104.1"


def native_multiframe(path: Path) -> Dataset:
    """Four 16-bit frames, each with values of its own."""
    ds = make_instance(SPEC, 0, 0)
    ds.SOPInstanceUID = MULTIFRAME
    ds.SeriesInstanceUID = f"{SPEC.study_uid}.93"
    ds.file_meta.MediaStorageSOPInstanceUID = MULTIFRAME
    ds.NumberOfFrames = 4
    frames = np.stack([np.full((SPEC.rows, SPEC.columns), 100 * (k + 1), dtype=np.uint16)
                       + np.arange(SPEC.rows * SPEC.columns, dtype=np.uint16).reshape(
                           SPEC.rows, SPEC.columns) for k in range(4)])
    ds.PixelData = frames.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds


def jpeg_multiframe(path: Path) -> list[bytes]:
    """Three JPEG Baseline frames of different content; their encoded bytes."""
    ds = make_instance(SPEC, 0, 0)
    ds.SOPInstanceUID = MULTIFRAME_JPEG
    ds.SeriesInstanceUID = f"{SPEC.study_uid}.94"
    ds.file_meta.MediaStorageSOPInstanceUID = MULTIFRAME_JPEG
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = 3
    encoded = []
    for k in range(3):
        pixels = np.full((SPEC.rows, SPEC.columns), 40 * (k + 1), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG")
        encoded.append(buffer.getvalue())
    ds.PixelData = encapsulate(encoded, has_bot=True)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(path, enforce_file_format=True)
    return encoded


@pytest.fixture(scope="module")
def sent(node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("wado-data")
    paths = write_study(folder / "ct", SPEC) + write_study(folder / "other", OTHER)
    write_jpeg_instance(folder / "jpeg.dcm", SPEC)
    native_multiframe(folder / "multiframe.dcm")
    encoded = jpeg_multiframe(folder / "multiframe-jpeg.dcm")
    paths += [folder / "jpeg.dcm", folder / "multiframe.dcm", folder / "multiframe-jpeg.dcm",
              wrapped_file(folder / "pdf", "pdf", SPEC, 40)]
    result = dcmtk("storescu", "-xy", "-aec", node.ae_title, "+sd", "+r", "127.0.0.1",
                   str(node.dicom_port), str(folder))
    assert result.returncode == 0, result.stderr
    node.cli("role", "add", ROLE, "--allow", "search,documents")
    return {"files": {str(dcmread(p).SOPInstanceUID): p for p in paths},
            "jpeg_frames": encoded}


@pytest.fixture(scope="module")
def client(node: NodeProcess, sent: dict[str, Any]) -> DICOMwebClient:
    return DICOMwebClient(f"{node.http_url}/dicom-web", headers={"Authorization": node.api_key})


def test_a_study_is_retrieved_as_stored(client: DICOMwebClient, sent: dict[str, Any]) -> None:
    got = {str(ds.SOPInstanceUID): ds for ds in client.retrieve_study(SPEC.study_uid)}
    files = {sop: p for sop, p in sent["files"].items() if sop.startswith(SPEC.study_uid)}
    assert sorted(got) == sorted(files)
    for sop, path in files.items():
        original = dcmread(path)
        assert got[sop].file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert got[sop].get("PixelData") == original.get("PixelData")
    series = client.retrieve_series(SPEC.study_uid, CT_SERIES)
    assert sorted(str(ds.SOPInstanceUID) for ds in series) == [
        f"{CT_SERIES}.{n}" for n in (1, 2, 3)]


def test_an_instance_asked_for_in_explicit_little_endian_is_decompressed(
        client: DICOMwebClient, sent: dict[str, Any]) -> None:
    ds = client.retrieve_instance(
        SPEC.study_uid, f"{SPEC.study_uid}.90", JPEG,
        media_types=(("application/dicom", ExplicitVRLittleEndian),))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert len(ds.PixelData) == SPEC.rows * SPEC.columns
    original = dcmread(sent["files"][JPEG]).pixel_array
    assert np.abs(ds.pixel_array.astype(int) - original.astype(int)).max() <= 2


def test_series_metadata_holds_the_headers_and_bulk_data_uris(
        client: DICOMwebClient, node: NodeProcess, sent: dict[str, Any]) -> None:
    found = client.retrieve_series_metadata(SPEC.study_uid, CT_SERIES)
    assert sorted(value(m, "00080018") for m in found) == [f"{CT_SERIES}.{n}" for n in (1, 2, 3)]
    first = next(m for m in found if value(m, "00080018") == f"{CT_SERIES}.1")
    original = dcmread(sent["files"][f"{CT_SERIES}.1"])
    assert value(first, "00100010") == {"Alphabetic": "WADO^PATIENT"}
    assert value(first, "00280010") == original.Rows
    assert first["7FE00010"]["BulkDataURI"] == (
        f"{node.http_url}/dicom-web/studies/{SPEC.study_uid}/series/{CT_SERIES}/instances/"
        f"{CT_SERIES}.1/bulkdata/7FE00010")
    assert "InlineBinary" not in str(first["7FE00010"])
    # The same answer again, now from the series' metadata file.
    assert client.retrieve_series_metadata(SPEC.study_uid, CT_SERIES) == found
    study = client.retrieve_study_metadata(SPEC.study_uid)
    assert len(study) == len([s for s in sent["files"] if s.startswith(SPEC.study_uid)])
    one = client.retrieve_instance_metadata(SPEC.study_uid, CT_SERIES, f"{CT_SERIES}.2")
    assert value(one, "00080018") == f"{CT_SERIES}.2"


def test_metadata_uris_follow_a_trusted_proxy_only(node: NodeProcess, sent: dict[str, Any]
                                                   ) -> None:
    url = (f"{node.http_url}/dicom-web/studies/{SPEC.study_uid}/series/{CT_SERIES}/instances/"
           f"{CT_SERIES}.1/metadata")
    forged = requests.get(url, timeout=30, headers={
        "Authorization": node.api_key, "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https"})
    assert forged.status_code == 200
    assert "evil.example" not in forged.text
    assert forged.json()[0]["7FE00010"]["BulkDataURI"].startswith(node.http_url)


def test_native_frames_are_cut_from_the_file(client: DICOMwebClient, sent: dict[str, Any]
                                            ) -> None:
    original = dcmread(sent["files"][MULTIFRAME])
    size = SPEC.rows * SPEC.columns * 2
    got = client.retrieve_instance_frames(SPEC.study_uid, f"{SPEC.study_uid}.93", MULTIFRAME,
                                          frame_numbers=[2, 4])
    assert got == [original.PixelData[size:2 * size], original.PixelData[3 * size:4 * size]]


def test_compressed_frames_as_stored_or_decoded(client: DICOMwebClient, sent: dict[str, Any]
                                                ) -> None:
    series = f"{SPEC.study_uid}.94"
    stored = client.retrieve_instance_frames(SPEC.study_uid, series, MULTIFRAME_JPEG,
                                             frame_numbers=[3, 1], media_types=("image/jpeg",))
    encoded = sent["jpeg_frames"]
    assert [f.rstrip(b"\0") for f in stored] == [encoded[2].rstrip(b"\0"),
                                                 encoded[0].rstrip(b"\0")]
    decoded = client.retrieve_instance_frames(
        SPEC.study_uid, series, MULTIFRAME_JPEG, frame_numbers=[2],
        media_types=(("application/octet-stream", ExplicitVRLittleEndian),))
    assert len(decoded[0]) == SPEC.rows * SPEC.columns
    assert abs(int(np.frombuffer(decoded[0], dtype=np.uint8).mean()) - 80) <= 2
    original = dcmread(sent["files"][MULTIFRAME_JPEG])
    frames = list(generate_frames(original.PixelData, number_of_frames=3))
    assert stored[1].rstrip(b"\0") == frames[0].rstrip(b"\0")


def test_frames_negotiation(node: NodeProcess, sent: dict[str, Any]) -> None:
    url = (f"{node.http_url}/dicom-web/studies/{SPEC.study_uid}/series/{SPEC.study_uid}.90/"
           f"instances/{JPEG}/frames/1")
    key = {"Authorization": node.api_key}
    wildcard = requests.get(url, timeout=30, headers={
        **key, "Accept": 'multipart/related; type="application/octet-stream"; '
                         "transfer-syntax=*"})
    assert wildcard.status_code == 200
    assert f"transfer-syntax={JPEGBaseline8Bit}" in wildcard.text[:400]
    refused = requests.get(url, timeout=30, headers={
        **key, "Accept": 'multipart/related; type="image/jp2"'})
    assert refused.status_code == 406
    assert "image/jp2" in refused.json()["error"]
    past_the_end = requests.get(url.replace("/frames/1", "/frames/9"), headers=key, timeout=30)
    assert past_the_end.status_code == 404
    bad = requests.get(url.replace("/frames/1", "/frames/0,x"), headers=key, timeout=30)
    assert bad.status_code == 400 and "frames" in bad.json()["error"]


def test_bulk_data_of_an_encapsulated_document(client: DICOMwebClient, sent: dict[str, Any]
                                               ) -> None:
    meta = client.retrieve_instance_metadata(SPEC.study_uid, f"{SPEC.study_uid}.40", PDF)
    uri = meta["00420011"]["BulkDataURI"]
    document = client.retrieve_bulkdata(uri)[0]
    assert document.rstrip(b"\0") == dcmread(sent["files"][PDF]).EncapsulatedDocument.rstrip(
        b"\0")
    assert document.startswith(b"%PDF")


def test_rendered_and_thumbnails(client: DICOMwebClient, node: NodeProcess) -> None:
    rendered = client.retrieve_instance_rendered(SPEC.study_uid, CT_SERIES, f"{CT_SERIES}.1",
                                                 media_types=("image/png",))
    image = Image.open(io.BytesIO(rendered))
    assert image.format == "PNG" and image.size == (SPEC.columns, SPEC.rows)
    frame = client.retrieve_instance_frames_rendered(
        SPEC.study_uid, f"{SPEC.study_uid}.93", MULTIFRAME, frame_numbers=[3],
        media_types=("image/jpeg",), params={"viewport": "48,48"})
    assert Image.open(io.BytesIO(frame)).format == "JPEG"
    # dicomweb-client has no thumbnail call.
    thumbnail = requests.get(f"{node.http_url}/dicom-web/studies/{SPEC.study_uid}/thumbnail",
                             headers={"Authorization": node.api_key, "Accept": "image/jpeg"},
                             timeout=30)
    assert thumbnail.status_code == 200 and thumbnail.headers["Content-Type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumbnail.content)).size) <= 128


def multipart_bodies(response: requests.Response) -> list[bytes]:
    """The parts' bodies of a multipart/related answer."""
    boundary = response.headers["Content-Type"].split("boundary=")[1].strip('"').encode()
    parts = response.content.split(b"--" + boundary)[1:-1]
    return [part.split(b"\r\n\r\n", 1)[1][:-2] for part in parts]


def test_a_series_rendered_is_one_image_per_instance(node: NodeProcess,
                                                     sent: dict[str, Any]) -> None:
    # dicomweb-client reads a rendered series as one image: its parts are read here.
    response = requests.get(
        f"{node.http_url}/dicom-web/studies/{SPEC.study_uid}/series/{CT_SERIES}/rendered",
        headers={"Authorization": node.api_key, "Accept": "image/jpeg"}, timeout=60)
    assert response.status_code == 200, response.text
    assert 'type="image/jpeg"' in response.headers["Content-Type"]
    images = multipart_bodies(response)
    assert len(images) == 3
    assert all(Image.open(io.BytesIO(image)).size == (SPEC.columns, SPEC.rows)
               for image in images)


def test_a_session_reads_its_grant_only(node: NodeProcess, sent: dict[str, Any]) -> None:
    browser, cookies = session_client(node, studyUID=SPEC.study_uid, hideDocuments="false")
    metadata = browser.retrieve_series_metadata(SPEC.study_uid, CT_SERIES)
    assert len(metadata) == 3
    frames = browser.retrieve_instance_frames(SPEC.study_uid, f"{SPEC.study_uid}.93", MULTIFRAME,
                                              frame_numbers=[1])
    assert len(frames[0]) == SPEC.rows * SPEC.columns * 2
    for path in (f"/studies/{OTHER.study_uid}", f"/studies/{OTHER.study_uid}/metadata",
                 f"/studies/{OTHER.study_uid}/series/{OTHER.study_uid}.1/instances/"
                 f"{OTHER.study_uid}.1.1/frames/1"):
        response = cookies.get(f"{node.http_url}/dicom-web{path}", timeout=30)
        assert response.status_code == 403, path


def test_documents_stay_hidden_from_a_session_that_hides_them(
        node: NodeProcess, client: DICOMwebClient, sent: dict[str, Any]) -> None:
    browser, cookies = session_client(node, studyUID=SPEC.study_uid)  # hideDocuments default
    sops = [value(m, "00080018") for m in browser.retrieve_study_metadata(SPEC.study_uid)]
    assert PDF not in sops and JPEG in sops
    assert PDF not in str(browser.search_for_instances(SPEC.study_uid))
    # Nor are they counted: the study's counts and modalities are those of what it shows.
    fields = ["NumberOfStudyRelatedInstances", "NumberOfStudyRelatedSeries",
              "ModalitiesInStudy", "SOPClassesInStudy"]
    seen = browser.search_for_studies(search_filters={"StudyInstanceUID": SPEC.study_uid},
                                      fields=fields)[0]
    everything = client.search_for_studies(search_filters={"StudyInstanceUID": SPEC.study_uid},
                                           fields=fields)[0]
    shown_series = {value(s, "0020000E") for s in browser.search_for_series(SPEC.study_uid)}
    assert value(seen, "00201208") == len(sops) < value(everything, "00201208")
    assert value(seen, "00201206") == len(shown_series) < value(everything, "00201206")
    assert "DOC" not in seen.get("00080061", {}).get("Value", [])
    assert PDF_CLASS not in seen.get("00080062", {}).get("Value", [])
    assert PDF_CLASS in everything["00080062"]["Value"]
    series_counts = browser.search_for_series(SPEC.study_uid, fields=[
        "NumberOfSeriesRelatedInstances"])
    assert sum(value(s, "00201209") for s in series_counts) == len(sops)
    hidden = cookies.get(f"{node.http_url}/dicom-web/studies/{SPEC.study_uid}/series/"
                         f"{SPEC.study_uid}.40/instances/{PDF}/metadata", timeout=30)
    assert hidden.status_code == 404


def test_an_anonymized_session_reads_pixels_but_no_identity(node: NodeProcess,
                                                            sent: dict[str, Any]) -> None:
    browser, cookies = session_client(node, studyUID=SPEC.study_uid, anonymize="true")
    text = str(browser.retrieve_study_metadata(SPEC.study_uid))
    assert "WADO^PATIENT" not in text and "WADO-1" not in text and "WADOACC" not in text
    assert browser.retrieve_instance_frames(SPEC.study_uid, f"{SPEC.study_uid}.93", MULTIFRAME,
                                            frame_numbers=[1])
    whole = cookies.get(f"{node.http_url}/dicom-web/studies/{SPEC.study_uid}", timeout=30)
    assert whole.status_code == 403


def test_metadata_is_made_ahead_once_the_node_is_idle(node: NodeProcess,
                                                      tmp_path: Path) -> None:
    """A series received over C-STORE gets its metadata file without anyone asking for it."""
    spec = StudySpec(patient_id="WADO-AHEAD", study_uid=uid(1960, 3), instances_per_series=4,
                     rows=8, columns=8)
    write_study(tmp_path, spec)
    result = dcmtk("storescu", "-aec", node.ae_title, "+sd", "+r", "127.0.0.1",
                   str(node.dicom_port), str(tmp_path))
    assert result.returncode == 0, result.stderr
    series = f"{spec.study_uid}.1"
    made = node.data_dir / "dicomweb-metadata" / series[-2:] / f"{series}.json"
    deadline = time.monotonic() + 30
    while not made.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert made.is_file(), "no metadata file 30 s after the series arrived"
    assert all(sop in made.read_text() for sop in (f"{series}.{n}" for n in range(1, 5)))


async def test_metadata_waits_while_another_worker_of_the_node_receives(tmp_path: Path) -> None:
    """A worker that received nothing itself does not read headers while another worker of the
    same node receives (its incoming/ folder changes); it makes the metadata once all are
    idle."""
    spec = StudySpec(patient_id="WADO-BUSY", study_uid=uid(1960, 4), instances_per_series=2,
                     rows=8, columns=8)
    config = config_from_dict(config_dict(), base_dir=tmp_path)
    async with open_services(config, worker=WorkerPlace(0, 2)) as services:
        metadata = SeriesMetadata(services, config.data_dir / METADATA_FOLDER)
        warmer = MetadataWarmer(services, metadata, idle_seconds=0.3, poll_seconds=0.05)
        services.ingestor.listeners.append(warmer.instance_indexed)
        for path in write_study(tmp_path / "sent", spec):
            await services.ingestor.ingest_copy(path, "test")
        series = f"{spec.study_uid}.1"
        made = metadata_file(config.data_dir / METADATA_FOLDER, series)
        other_worker = services.storage.incoming.parent / "worker-2"
        other_worker.mkdir()
        warming = asyncio.create_task(warmer.run())
        try:
            busy_until = time.monotonic() + 1.5  # five times the idle time, receiving
            while time.monotonic() < busy_until:
                (other_worker / "received.dcm").touch()
                (other_worker / "received.dcm").unlink()
                await asyncio.sleep(0.05)
                assert not made.exists(), "metadata made while another worker received"
            deadline = time.monotonic() + 30
            while not made.is_file():
                assert time.monotonic() < deadline, "no metadata once the node was idle"
                await asyncio.sleep(0.05)
        finally:
            warming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warming
