"""STOW-RS against the serving node, through the field's client (dicomweb-client): what is
stored is found and byte-identical, partial and total failures, the study of the URL, who may
store, and a large instance streamed without the body in memory."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from requests import HTTPError

from node.errors import Conflict
from node.viewing.roles import add_role
from tests.factory import StudySpec, make_instance, uid
from tests.index_db import rows
from tests.peers import NodeProcess
from tests.rest_support import API_KEY, running_app
from tests.small_disk import fill, tmpfs
from tests.viewer_data import sr_instance

SAVE_ROLE = "dicomweb-stow-save"
VIEW_ROLE = "dicomweb-stow-view"
BOUNDARY = "stow-test-boundary-0123"
OUT_OF_RESOURCES = 0xA700
# FailureReason / WarningReason values the node answers with.
CANNOT_UNDERSTAND = 0xC000
DATASET_MISMATCH = 0xA900
WRONG_STUDY = 0xC122
NOT_AUTHORIZED = 0x0124
DUPLICATE = 0xB000


def spec(number: int, **changes: Any) -> StudySpec:
    values: dict[str, Any] = {"patient_id": f"STOW-{number}", "patient_name": "STOW^TEST",
                              "study_uid": uid(1990, number), "rows": 8, "columns": 8,
                              "instances_per_series": 3, **changes}
    return StudySpec(**values)


def datasets(study: StudySpec, count: int | None = None, series: int = 0) -> list[Dataset]:
    """Instances as a client holds them: read from Part 10 bytes (with their preamble)."""
    return [as_read(make_instance(study, series, index))
            for index in range(count or study.instances_per_series)]


def as_read(ds: Dataset) -> Dataset:
    """`ds` as read from its Part 10 bytes (with the preamble a client's file has)."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(BytesIO(buffer.getvalue()))


def encoded(ds: Dataset) -> bytes:
    """The bytes dicomweb-client sends for `ds`."""
    with BytesIO() as buffer:
        pydicom.dcmwrite(buffer, ds)
        return buffer.getvalue()


def body(parts: list[tuple[str | None, bytes]]) -> bytes:
    out = BytesIO()
    for content_type, data in parts:
        out.write(f"--{BOUNDARY}\r\n".encode())
        if content_type is not None:
            out.write(f"Content-Type: {content_type}\r\n".encode())
        out.write(b"\r\n" + data + b"\r\n")
    out.write(f"--{BOUNDARY}--\r\n".encode())
    return out.getvalue()


def post(node: NodeProcess, data: bytes, path: str = "/studies",
         content_type: str = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
         **headers: str) -> requests.Response:
    sent = {"Authorization": node.api_key, "Content-Type": content_type, **headers}
    return requests.post(f"{node.http_url}/dicom-web{path}", data=data, headers=sent,
                         timeout=60)


def items(answer: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    values: list[dict[str, Any]] = answer.get(tag, {}).get("Value", [])
    return values


def value(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value")
    return values[0] if values else None


def stored_row(node: NodeProcess, sop_uid: str) -> tuple[Any, ...] | None:
    found = rows(node.data_dir, "SELECT path, origin, size FROM instances WHERE sop_uid = :u",
                 u=sop_uid)
    return found[0] if found else None


def stored_bytes(node: NodeProcess, sop_uid: str) -> bytes:
    row = stored_row(node, sop_uid)
    assert row is not None, f"{sop_uid} is not in the index"
    return (node.data_dir / "storage" / row[0]).read_bytes()


@pytest.fixture(scope="module")
def roles(node: NodeProcess) -> NodeProcess:
    for name, allowed in ((SAVE_ROLE, "search,save"), (VIEW_ROLE, "search")):
        added = node.cli("role", "add", name, "--allow", allowed)
        assert added.returncode == 0 or "exists" in added.stderr, added.stderr
    return node


@pytest.fixture(scope="module")
def client(node: NodeProcess) -> DICOMwebClient:
    return DICOMwebClient(f"{node.http_url}/dicom-web", headers={"Authorization": node.api_key})


def session(node: NodeProcess, username: str, role: str, **params: str
            ) -> tuple[DICOMwebClient, requests.Session]:
    """A viewer's session cookie for `params` (a token redeemed once): the client, and the
    browser's HTTP session."""
    token = requests.get(f"{node.http_url}/ngv/obscurl", timeout=30,
                         headers={"Authorization": node.api_key},
                         params={"username": username, "role": role, **params})
    assert token.status_code == 200, token.text
    browser = requests.Session()
    opened = browser.get(f"{node.http_url}/ngv", params={"q": token.text}, timeout=30,
                         allow_redirects=False)
    assert opened.status_code == 302, opened.text
    return DICOMwebClient(f"{node.http_url}/dicom-web", session=browser), browser


def test_stored_instances_are_found_by_qido_with_the_bytes_sent(
        client: DICOMwebClient, node: NodeProcess) -> None:
    study = spec(1)
    sent = datasets(study)
    answer = client.store_instances(sent)
    assert answer.RetrieveURL.endswith(f"/dicom-web/studies/{study.study_uid}")
    references = answer.ReferencedSOPSequence
    assert [r.ReferencedSOPInstanceUID for r in references] == [d.SOPInstanceUID for d in sent]
    assert all(r.ReferencedSOPClassUID == d.SOPClassUID for r, d in zip(references, sent,
                                                                         strict=True))
    assert references[0].RetrieveURL.endswith(
        f"/studies/{study.study_uid}/series/{sent[0].SeriesInstanceUID}"
        f"/instances/{sent[0].SOPInstanceUID}")
    assert "FailedSOPSequence" not in answer
    found = client.search_for_instances(study.study_uid)
    assert sorted(value(f, "00080018") for f in found) == sorted(d.SOPInstanceUID for d in sent)
    for ds in sent:
        assert stored_bytes(node, ds.SOPInstanceUID) == encoded(ds)
        row = stored_row(node, ds.SOPInstanceUID)
        assert row is not None and row[1] == "stow"


def test_storing_into_the_study_of_the_url(client: DICOMwebClient) -> None:
    study = spec(2)
    answer = client.store_instances(datasets(study), study_instance_uid=study.study_uid)
    assert len(answer.ReferencedSOPSequence) == 3
    assert answer.RetrieveURL.endswith(f"/studies/{study.study_uid}")
    assert len(client.search_for_instances(study.study_uid)) == 3


def test_a_part_that_is_not_dicom_fails_alone_with_202(node: NodeProcess) -> None:
    study = spec(3)
    good = datasets(study, 2)
    response = post(node, body([("application/dicom", encoded(good[0])),
                                ("application/dicom", b"this is not a DICOM file"),
                                (None, encoded(good[1]))]))
    assert response.status_code == 202, response.text
    assert response.headers["Content-Type"] == "application/dicom+json"
    answer = response.json()
    failed = items(answer, "00081198")
    assert len(failed) == 1
    assert value(failed[0], "00081197") == CANNOT_UNDERSTAND
    assert "Value" not in failed[0]["00081155"]  # no instance could be named
    assert [value(i, "00081155") for i in items(answer, "00081199")] == [
        d.SOPInstanceUID for d in good]
    assert "part 2" in response.headers["Warning"]
    for ds in good:
        assert stored_bytes(node, ds.SOPInstanceUID) == encoded(ds)


def test_an_instance_without_a_unique_key_fails_naming_it(client: DICOMwebClient,
                                                          node: NodeProcess) -> None:
    good, broken = datasets(spec(4), 2)
    del broken.SeriesInstanceUID
    answer = client.store_instances([good, broken])
    assert len(answer.ReferencedSOPSequence) == 1
    failed = answer.FailedSOPSequence
    assert len(failed) == 1
    assert failed[0].ReferencedSOPInstanceUID == broken.SOPInstanceUID
    assert failed[0].FailureReason == DATASET_MISMATCH
    assert stored_row(node, broken.SOPInstanceUID) is None


def test_all_parts_bad_is_409(node: NodeProcess) -> None:
    response = post(node, body([("application/dicom", b"not DICOM"),
                                ("application/dicom", b"")]))
    assert response.status_code == 409, response.text
    failed = items(response.json(), "00081198")
    assert [value(f, "00081197") for f in failed] == [CANNOT_UNDERSTAND, CANNOT_UNDERSTAND]
    assert "00081199" not in response.json()


def test_an_instance_of_another_study_is_refused_on_a_study_url(
        client: DICOMwebClient, node: NodeProcess) -> None:
    mine, other = spec(5), spec(6)
    own = datasets(mine, 1)[0]
    stranger = datasets(other, 1)[0]
    answer = client.store_instances([own, stranger], study_instance_uid=mine.study_uid)
    assert [r.ReferencedSOPInstanceUID for r in answer.ReferencedSOPSequence] == [
        own.SOPInstanceUID]
    assert answer.FailedSOPSequence[0].ReferencedSOPInstanceUID == stranger.SOPInstanceUID
    assert answer.FailedSOPSequence[0].FailureReason == WRONG_STUDY
    assert stored_row(node, stranger.SOPInstanceUID) is None
    assert client.search_for_studies(search_filters={"StudyInstanceUID": other.study_uid}) == []
    with pytest.raises(HTTPError) as refused:
        client.store_instances([stranger], study_instance_uid=mine.study_uid)
    assert refused.value.response.status_code == 409


def test_a_duplicate_is_kept_with_a_warning(client: DICOMwebClient, node: NodeProcess) -> None:
    first = datasets(spec(7), 1)[0]
    client.store_instances([first])
    again = pydicom.dcmread(BytesIO(encoded(first)))
    again.PatientName = "STOW^CHANGED"
    response = post(node, body([("application/dicom", encoded(again))]))
    assert response.status_code == 202, response.text
    stored = items(response.json(), "00081199")
    assert value(stored[0], "00081196") == DUPLICATE
    assert "kept" in response.headers["Warning"]
    assert stored_bytes(node, first.SOPInstanceUID) == encoded(first)


def test_without_the_key_or_with_a_wrong_one_is_401(node: NodeProcess) -> None:
    data = body([("application/dicom", encoded(datasets(spec(8), 1)[0]))])
    url = f"{node.http_url}/dicom-web/studies"
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; '
                               f'boundary={BOUNDARY}'}
    assert requests.post(url, data=data, headers=headers, timeout=30).status_code == 401
    wrong = requests.post(url, data=data, timeout=30,
                          headers={**headers, "Authorization": "wrong"})
    assert wrong.status_code == 401
    assert stored_row(node, uid(1990, 8) + ".1.1") is None


@pytest.mark.parametrize(("content_type", "data", "status", "named"), [
    ("application/dicom", b"DICM", 400, "Content-Type"),
    ("multipart/related; type=application/dicom", b"--x--", 400, "Content-Type"),
    (f'multipart/related; type="application/dicom+xml"; boundary={BOUNDARY}',
     b"", 415, "application/dicom+xml"),
    (f"multipart/related; type=application/dicom; boundary={BOUNDARY}",
     f"--{BOUNDARY}--\r\n".encode(), 400, "no part"),
    (f"multipart/related; type=application/dicom; boundary={BOUNDARY}",
     body([("text/plain", b"hello")]), 415, "text/plain"),
    (f"multipart/related; type=application/dicom; boundary={BOUNDARY}",
     f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\nDICM but never closed".encode(),
     400, "malformed"),
    (f"multipart/related; type=application/dicom; boundary={BOUNDARY}",
     b"no boundary anywhere", 400, "malformed"),
], ids=["not-multipart", "no-boundary", "other-type", "no-part", "part-of-other-type",
        "unclosed", "garbage"])
def test_bodies_it_cannot_store_are_refused_with_the_reason(
        node: NodeProcess, content_type: str, data: bytes, status: int, named: str) -> None:
    response = post(node, data, content_type=content_type)
    assert response.status_code == status, response.text
    assert named in response.text


def test_a_study_path_that_is_not_a_uid_is_400(node: NodeProcess) -> None:
    response = post(node, body([("application/dicom", b"x")]), path="/studies/1.2.x")
    assert response.status_code == 400 and response.json()["field"] == "study"


def test_a_session_without_save_is_403(roles: NodeProcess, client: DICOMwebClient) -> None:
    study = spec(9)
    client.store_instances(datasets(study, 1))
    viewer, _ = session(roles, "stow-viewer", VIEW_ROLE, studyUID=study.study_uid)
    extra = datasets(study, 2)[1]
    for target in (None, study.study_uid):
        with pytest.raises(HTTPError) as refused:
            viewer.store_instances([extra], study_instance_uid=target)
        assert refused.value.response.status_code == 403
    assert stored_row(roles, extra.SOPInstanceUID) is None


def test_a_session_with_save_stores_into_its_study_audited_with_its_user(
        roles: NodeProcess, client: DICOMwebClient) -> None:
    study, outside = spec(10), spec(11)
    client.store_instances(datasets(study, 1) + datasets(outside, 1))
    viewer, browser = session(roles, "stow-reader-10", SAVE_ROLE, studyUID=study.study_uid)
    measurement = datasets(study, 1, series=1)[0]  # a new series, as a viewer saves
    answer = viewer.store_instances([measurement], study_instance_uid=study.study_uid)
    assert answer.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == measurement.SOPInstanceUID
    row = stored_row(roles, measurement.SOPInstanceUID)
    assert row is not None and row[1] == "stow:stow-reader-10"
    audited = rows(roles.data_dir, "SELECT username, role, detail FROM audit_events "
                                   "WHERE action = 'stow' AND username = :u", u="stow-reader-10")
    assert len(audited) == 1
    detail = audited[0][2] if isinstance(audited[0][2], dict) else json.loads(audited[0][2])
    assert audited[0][1] == SAVE_ROLE
    assert detail["sopInstanceUIDs"] == [measurement.SOPInstanceUID]
    assert detail["studyInstanceUIDs"] == [study.study_uid]
    # Outside its grant: 403 on the study's URL, a failure item on /studies.
    stranger = datasets(outside, 2)[1]
    with pytest.raises(HTTPError) as refused:
        viewer.store_instances([stranger], study_instance_uid=outside.study_uid)
    assert refused.value.response.status_code == 403
    response = browser.post(f"{roles.http_url}/dicom-web/studies", timeout=30,
                            data=body([("application/dicom", encoded(stranger))]),
                            headers={"Content-Type": f"multipart/related; "
                                     f"type=application/dicom; boundary={BOUNDARY}"})
    assert response.status_code == 409
    assert value(items(response.json(), "00081198")[0], "00081197") == NOT_AUTHORIZED
    assert stored_row(roles, stranger.SOPInstanceUID) is None


def test_an_anonymized_session_cannot_save(roles: NodeProcess, client: DICOMwebClient) -> None:
    study = spec(12)
    client.store_instances(datasets(study, 1))
    viewer, _ = session(roles, "stow-anon", SAVE_ROLE, studyUID=study.study_uid,
                        anonymize="true")
    with pytest.raises(HTTPError) as refused:
        viewer.store_instances(datasets(study, 2)[1:], study_instance_uid=study.study_uid)
    assert refused.value.response.status_code == 403


def test_measurements_a_session_saved_stay_shown_where_documents_are_hidden(
        roles: NodeProcess, client: DICOMwebClient) -> None:
    """A viewer's saved measurements are annotations of the images, not documents: a session
    with documents hidden (VIEW_ROLE) sees them, and still not an SR stored by the API key."""
    study = spec(40)
    client.store_instances(datasets(study, 1))
    report = as_read(sr_instance(study))
    client.store_instances([report])
    measurement = sr_instance(study)
    measurement.SeriesInstanceUID = f"{study.study_uid}.31"
    measurement.SOPInstanceUID = measurement.file_meta.MediaStorageSOPInstanceUID = (
        f"{study.study_uid}.31.1")
    measurement = as_read(measurement)
    saver, _ = session(roles, "stow-measurer", SAVE_ROLE, studyUID=study.study_uid)
    saver.store_instances([measurement], study_instance_uid=study.study_uid)
    viewer, _ = session(roles, "stow-looker", VIEW_ROLE, studyUID=study.study_uid)
    listed = viewer.search_for_series(study.study_uid,
                                      fields=["NumberOfSeriesRelatedInstances"])
    assert [value(s, "00201209") for s in listed] == [1, 1]
    series = {value(s, "0020000E") for s in listed}
    assert measurement.SeriesInstanceUID in series
    assert report.SeriesInstanceUID not in series
    for found in (viewer.search_for_instances(study.study_uid),
                  viewer.retrieve_study_metadata(study.study_uid)):
        sops = {value(i, "00080018") for i in found}
        assert measurement.SOPInstanceUID in sops and report.SOPInstanceUID not in sops
    metadata = viewer.retrieve_series_metadata(study.study_uid, measurement.SeriesInstanceUID)
    assert [value(i, "00080018") for i in metadata] == [measurement.SOPInstanceUID]
    # The study's counts and lists leave the hidden report out too (the API key's do not).
    fields = ["NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
              "SOPClassesInStudy"]
    for reader, series_count, instance_count in ((viewer, 2, 2), (client, 3, 3)):
        [found] = reader.search_for_studies(search_filters={"StudyInstanceUID": study.study_uid},
                                            fields=fields)
        assert (value(found, "00201206"), value(found, "00201208")) == (
            series_count, instance_count)


# -- a large instance ------------------------------------------------------------------------


def _serving_pids(node: NodeProcess) -> list[int]:
    """The node's process and the workers it forked (any of them may serve the request)."""
    assert node.proc is not None
    pids = [node.proc.pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == node.proc.pid:
            pids.append(int(stat.parent.name))
    return pids


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_a_20_mb_instance_is_streamed_without_the_body_in_memory(
        client: DICOMwebClient, node: NodeProcess) -> None:
    big = make_instance(spec(13, rows=3200, columns=3200), 0, 0)
    buffer = BytesIO()
    big.save_as(buffer, enforce_file_format=True)
    sent = pydicom.dcmread(BytesIO(buffer.getvalue()))
    size = len(encoded(sent))
    assert size > 20_000_000
    pids = _serving_pids(node)
    before = {pid: _kib(pid, "VmRSS") for pid in pids}
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # restart the peak (VmHWM) from here
    peak = dict(before)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in pids:
                peak[pid] = max(peak[pid], _kib(pid, "VmRSS"))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        answer = client.store_instances([sent])
    finally:
        done.set()
        sampler.join()
    growth = max(max(peak[pid], _kib(pid, "VmHWM")) - before[pid] for pid in pids)
    print(f"{size} bytes stored; serving processes' RSS grew by at most {growth // 1024} MB")
    assert answer.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == sent.SOPInstanceUID
    stored = stored_bytes(node, sent.SOPInstanceUID)
    assert hashlib.sha256(stored).digest() == hashlib.sha256(encoded(sent)).digest()
    assert growth * 1024 < size // 2, f"RSS grew by {growth // 1024} MB for {size} bytes"


# -- the body limit (dicomweb.max_stow_bytes), in-process ------------------------------------

LIMIT = 64 * 1024


async def test_a_body_over_max_stow_bytes_is_413(tmp_path: Path) -> None:
    small = datasets(spec(14), 3)
    large = make_instance(spec(14, rows=256, columns=256), 1, 0)  # 128 KiB of pixels
    async with running_app(tmp_path / "app", dicomweb={"max_stow_bytes": LIMIT}) as api:
        headers = {"Authorization": API_KEY, "Content-Type": f"multipart/related; "
                   f"type=application/dicom; boundary={BOUNDARY}"}
        # Declared too large: refused before a byte is read.
        declared = body([("application/dicom", encoded(d)) for d in small]
                        + [("application/dicom", b"x" * LIMIT)])
        response = await api.client.post("/dicom-web/studies", data=declared, headers=headers)
        assert response.status == 413
        assert "max_stow_bytes" in (await response.json())["error"]

        # Chunked: found out while streaming; the parts before the limit are stored.
        async def chunks() -> AsyncIterator[bytes]:
            data = body([("application/dicom", encoded(small[0])),
                         ("application/dicom", encoded(large))])
            for start in range(0, len(data), 8192):
                yield data[start:start + 8192]

        response = await api.client.post("/dicom-web/studies", data=chunks(), headers=headers)
        assert response.status == 413
        assert "1 part(s) before it stored" in (await response.json())["error"]
        index = api.services.config.data_dir
        assert stored_in(index, small[0].SOPInstanceUID)
        assert not stored_in(index, large.SOPInstanceUID)
        assert list(api.services.storage.incoming.iterdir()) == []
        # Empty parts count too (each part's boundary and headers), so that a body within the
        # limit cannot make the node keep an answer item for each of millions of parts.
        empty = body([("application/dicom", b"")] * 700)
        assert len(empty) < LIMIT
        response = await api.client.post("/dicom-web/studies", data=empty, headers=headers)
        assert response.status == 413
        # Under the limit, stored.
        response = await api.client.post("/dicom-web/studies", headers=headers, data=body(
            [("application/dicom", encoded(d)) for d in small[1:]]))
        assert response.status == 200, await response.text()


def stored_in(data_dir: Path, sop_uid: str) -> bool:
    return bool(rows(data_dir, "SELECT 1 FROM instances WHERE sop_uid = :u", u=sop_uid))


async def test_a_full_disk_fails_the_parts_it_hits_and_stores_again_once_freed(
        tmp_path: Path) -> None:
    """Small parts are written by the ingest threads, large ones as they arrive: on a full
    disk either way the part fails 0xA700 with nothing of it kept, the parts after it are still
    answered, and the node stores again once space is back."""
    small = datasets(spec(15), 3)
    large = make_instance(spec(15, rows=1024, columns=1024), 1, 0)  # 2 MiB of pixels
    headers = {"Authorization": API_KEY, "Accept": "application/dicom+json",
               "Content-Type": f"multipart/related; type=application/dicom; boundary={BOUNDARY}"}
    with tmpfs(tmp_path / "storage", "1m") as root:
        async with running_app(tmp_path / "app", storage={"root": str(root)}) as api:
            response = await api.client.post("/dicom-web/studies", headers=headers, data=body(
                [("application/dicom", encoded(small[0])), ("application/dicom", encoded(large)),
                 ("application/dicom", encoded(small[1]))]))
            assert response.status == 202, await response.text()
            answer = await response.json()
            stored = [value(i, "00081155") for i in items(answer, "00081199")]
            assert stored == [small[0].SOPInstanceUID, small[1].SOPInstanceUID]
            failed = items(answer, "00081198")
            assert [value(i, "00081197") for i in failed] == [OUT_OF_RESOURCES]
            assert value(failed[0], "00081155") == large.SOPInstanceUID

            filler = fill(root, 1024)
            response = await api.client.post("/dicom-web/studies", headers=headers, data=body(
                [("application/dicom", encoded(small[2]))]))
            assert response.status == 409, await response.text()
            failed = items(await response.json(), "00081198")
            assert [value(i, "00081197") for i in failed] == [OUT_OF_RESOURCES]
            assert list(api.services.storage.incoming.iterdir()) == []
            index = api.services.config.data_dir
            assert not stored_in(index, small[2].SOPInstanceUID)

            filler.unlink()
            response = await api.client.post("/dicom-web/studies", headers=headers, data=body(
                [("application/dicom", encoded(small[2]))]))
            assert response.status == 200, await response.text()
            assert stored_in(index, small[2].SOPInstanceUID)


# -- a session's store stays within its grant, in-process ------------------------------------


async def test_a_session_cannot_replace_an_instance_of_a_study_outside_its_grant(
        tmp_path: Path) -> None:
    """With overwrite_duplicates on, an instance sent with the SOP Instance UID of another
    patient's instance would replace that instance (and move it into the session's study):
    a session's store is refused there, and the other study keeps its instance."""
    own, other = spec(31), spec(32)
    async with running_app(tmp_path / "app", node={"overwrite_duplicates": True}) as api:
        with contextlib.suppress(Conflict):
            await add_role(api.services.sessions, SAVE_ROLE, ["save"])
        for study in (own, other):
            await api.ingest(study)
        victim = datasets(other, 1)[0]
        forged = datasets(own, 1, series=5)[0]
        forged.SOPInstanceUID = victim.SOPInstanceUID
        headers = await api.session_headers({"username": "forger", "role": SAVE_ROLE,
                                             "studyUID": own.study_uid})
        response = await api.client.post(
            f"/dicom-web/studies/{own.study_uid}", headers={
                **headers, "Accept": "application/dicom+json", "Content-Type":
                f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'},
            data=body([("application/dicom", encoded(forged))]))
        answer = await response.json()
        assert [item["00081197"]["Value"][0] for item in items(answer, "00081198")] == [
            NOT_AUTHORIZED], answer
        kept = await api.get(f"/dicom-web/studies/{other.study_uid}/instances",
                             {"SOPInstanceUID": victim.SOPInstanceUID})
        assert kept.status == 200
