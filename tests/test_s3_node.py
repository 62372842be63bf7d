"""A serving node on the S3 backend (moto's S3 server), through its doors: storescu in, objects
in the bucket; C-MOVE and C-GET out, byte for byte; a frame in the viewer; getIso; `check`; a
failed upload answered with a failure status; and two instances on PostgreSQL sharing one
bucket, each serving what the other received.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pynetdicom import AE, StoragePresentationContexts

from tests import index_db
from tests.cloud_peers import ServerProcess, moto, s3_client
from tests.factory import StudySpec, make_instance, uid, write_study
from tests.peers import PEER_ENV, NodeProcess, StoreSCP, dcmtk, incoming_files
from tests.postgres_peer import PostgresCluster
from tests.test_s3_storage import PREFIX, REGION, new_bucket, write_credentials

__all__ = ["moto"]  # the session fixture, used by name

ROLE = "physician"
STUDY = StudySpec(study_uid=uid(7711), patient_id="S3-NODE", series=2, instances_per_series=3,
                  rows=32, columns=32)
SECRET = "s3-node-secret-never-logged"
BURST = 60


def s3_node(folder: Path, moto: ServerProcess, bucket: str, ae_title: str = "VIEWNODE",
            database: str | None = None,
            move_destinations: list[dict[str, Any]] | None = None) -> NodeProcess:
    """A node process storing into `bucket`, its credentials in a file of its data folder."""
    extra: dict[str, dict[str, Any]] = {
        "storage": {"backend": "s3", "bucket": bucket, "prefix": PREFIX,
                    "endpoint_url": moto.url, "region": REGION,
                    "credentials_file": "s3_credentials", "fsync": False}}
    if database is not None:
        extra["database"] = {"url": database}
    node = NodeProcess(folder, ae_title=ae_title, extra=extra,
                       move_destinations=move_destinations or [])
    write_credentials(node.data_dir)
    (node.data_dir / "s3_credentials").write_text(
        f'{{"access_key_id": "test", "secret_access_key": "{SECRET}"}}')
    return node


def cached_objects(cache: Path) -> dict[str, bytes]:
    """A node's read cache by object path: each worker process keeps a folder of its own."""
    folders = sorted(cache.glob("worker-*")) or [cache]
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for folder in folders for p in folder.rglob("*.dcm")}


def dataset_bytes(path: Path) -> bytes:
    return dataset_bytes_of(path.read_bytes())


def dataset_bytes_of(data: bytes) -> bytes:
    """A DICOM file's bytes after its File Meta Information (which each writer makes its own)."""
    group_length = int.from_bytes(data[140:144], "little")
    return data[144 + group_length:]


def bucket_objects(moto: ServerProcess, bucket: str) -> dict[str, bytes]:
    client = s3_client(moto.url, REGION)
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for o in listed}


def empty_cache(node: NodeProcess) -> None:
    """Remove every cached object, so that what follows reads from the bucket."""
    cache = node.data_dir / "cache"
    for path in sorted(cache.rglob("*"), reverse=True):
        if path.is_file():
            path.unlink()


def stored_sop_files(node: NodeProcess) -> dict[str, str]:
    """SOP Instance UID -> path, from the node's index."""
    return dict(index_db.rows(node.data_dir, "SELECT sop_uid, path FROM instances"))


class Stored:
    def __init__(self, node: NodeProcess, bucket: str, sent: dict[str, Path]) -> None:
        self.node = node
        self.bucket = bucket
        self.sent = sent


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory, moto: ServerProcess,
           storescp: StoreSCP) -> Iterator[Stored]:
    folder = tmp_path_factory.mktemp("s3-node")
    bucket = new_bucket(moto)
    node = s3_node(folder / "node", moto, bucket, move_destinations=[
        {"ae_title": storescp.ae_title, "host": "127.0.0.1", "port": storescp.port}]).start()
    try:
        added = node.cli("role", "add", ROLE, "--allow", "search,download")
        assert added.returncode == 0, added.stderr
        files = write_study(folder / "sent", STUDY)
        result = dcmtk("storescu", "-aec", node.ae_title, "+sd", "+r", "127.0.0.1",
                       str(node.dicom_port), str(folder / "sent"))
        assert result.returncode == 0, result.stdout + result.stderr
        yield Stored(node, bucket, {str(dcmread(p).SOPInstanceUID): p for p in files})
    finally:
        node.stop()


def test_received_instances_are_objects_named_by_their_index_rows(
        stored: Stored, moto: ServerProcess) -> None:
    rows = stored_sop_files(stored.node)
    assert sorted(rows) == sorted(stored.sent)
    objects = bucket_objects(moto, stored.bucket)
    assert sorted(objects) == sorted(PREFIX + path for path in rows.values())
    for sop_uid, path in rows.items():
        assert dataset_bytes_of(objects[PREFIX + path]) == dataset_bytes(stored.sent[sop_uid])
    data = stored.node.data_dir
    assert not (data / "storage").exists()
    assert incoming_files(data) == []


def retrieve(tool: str, stored: Stored, *args: str) -> None:
    """movescu/getscu of the study, after emptying the node's cache: every file is read from
    the bucket."""
    empty_cache(stored.node)
    result = dcmtk(tool, "-S", "-aec", stored.node.ae_title, *args,
                   "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY.study_uid}",
                   "127.0.0.1", str(stored.node.dicom_port))
    assert result.returncode == 0, result.stdout + result.stderr


def assert_the_stored_bytes(received_files: list[Path], stored: Stored,
                            moto: ServerProcess) -> None:
    objects = bucket_objects(moto, stored.bucket)
    rows = stored_sop_files(stored.node)
    received = {str(dcmread(p).SOPInstanceUID): p for p in received_files}
    assert sorted(received) == sorted(stored.sent)
    for sop_uid, path in received.items():
        assert dataset_bytes(path) == dataset_bytes_of(objects[PREFIX + rows[sop_uid]])


def test_c_move_from_the_bucket_delivers_the_stored_bytes(
        stored: Stored, storescp: StoreSCP, moto: ServerProcess) -> None:
    storescp.clear()
    retrieve("movescu", stored, "-aem", storescp.ae_title)
    assert_the_stored_bytes(storescp.received(), stored, moto)


def test_c_get_from_the_bucket_delivers_the_stored_bytes(
        stored: Stored, tmp_path: Path, moto: ServerProcess) -> None:
    retrieve("getscu", stored, "-od", str(tmp_path))
    assert_the_stored_bytes(list(tmp_path.iterdir()), stored, moto)


async def test_a_viewer_session_renders_a_frame_read_from_the_bucket(stored: Stored) -> None:
    empty_cache(stored.node)
    node = stored.node
    sop_uid = sorted(stored.sent)[0]
    async with aiohttp.ClientSession(node.http_url) as http:
        async with http.get("/ngv/obscurl", headers={"Authorization": node.api_key}, params={
                "username": "u", "role": ROLE, "studyUID": STUDY.study_uid}) as r:
            assert r.status == 200, await r.text()
            token = await r.text()
        async with http.get(f"/ngv?q={token}", allow_redirects=False) as r:
            assert r.status == 302
            cookie = r.cookies["ngv_session"].value
        series = sop_uid.rsplit(".", 1)[0]
        async with http.get(
                f"/dicom-web/studies/{STUDY.study_uid}/series/{series}/instances/{sop_uid}"
                "/frames/1/rendered", headers={"Cookie": f"ngv_session={cookie}"}) as r:
            assert r.status == 200, await r.text()
            assert r.content_type.startswith("image/")
            assert len(await r.read()) > 100


def test_dicomweb_reads_and_stores_through_the_bucket(stored: Stored, moto: ServerProcess,
                                                      tmp_path: Path) -> None:
    """QIDO, metadata, frames and whole instances read from the bucket (cache emptied first),
    and a STOW-RS instance uploaded to it."""
    empty_cache(stored.node)
    node = stored.node
    client = DICOMwebClient(f"{node.http_url}/dicom-web", headers={"Authorization": node.api_key})
    assert [s["0020000D"]["Value"][0] for s in client.search_for_studies(
        search_filters={"PatientID": STUDY.patient_id})] == [STUDY.study_uid]
    series = f"{STUDY.study_uid}.1"
    assert len(client.retrieve_series_metadata(STUDY.study_uid, series)) == 3
    original = dcmread(stored.sent[f"{series}.2"])
    frame = client.retrieve_instance_frames(STUDY.study_uid, series, f"{series}.2",
                                            frame_numbers=[1])
    assert frame == [original.PixelData]
    got = client.retrieve_study(STUDY.study_uid)
    assert sorted(str(ds.SOPInstanceUID) for ds in got) == sorted(stored.sent)
    extra = StudySpec(study_uid=uid(1990, 77), patient_id="S3-STOW", rows=8, columns=8,
                      instances_per_series=1)
    client.store_instances([dcmread(p) for p in write_study(tmp_path, extra)])
    rows = stored_sop_files(node)
    assert f"{extra.study_uid}.1.1" in rows
    assert PREFIX + rows[f"{extra.study_uid}.1.1"] in bucket_objects(moto, stored.bucket)


def test_get_iso_builds_the_medium_from_the_bucket(stored: Stored, tmp_path: Path) -> None:
    empty_cache(stored.node)
    node = stored.node
    url = f"{node.http_url}/webdv/getIso?{urllib.parse.urlencode({'studyUID': STUDY.study_uid})}"
    request = urllib.request.Request(url, headers={"Authorization": node.api_key})
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200
        (tmp_path / "study.iso").write_bytes(response.read())
    extracted = subprocess.run(["osirrox", "-indev", str(tmp_path / "study.iso"), "-extract",
                                "/", str(tmp_path / "medium")],
                               capture_output=True, text=True, timeout=120)
    assert extracted.returncode == 0, extracted.stderr
    on_medium = {str(dcmread(p).SOPInstanceUID)
                 for p in (tmp_path / "medium" / "DICOM").rglob("*") if p.is_file()}
    assert on_medium == set(stored.sent)


def test_check_is_clean_then_reports_a_deleted_object(stored: Stored,
                                                      moto: ServerProcess) -> None:
    node = stored.node
    clean = node.cli("check")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "consistent" in clean.stdout.splitlines()[-1]
    client = s3_client(moto.url, REGION)
    path = sorted(stored_sop_files(node).values())[0]
    kept = client.get_object(Bucket=stored.bucket, Key=PREFIX + path)["Body"].read()
    client.delete_object(Bucket=stored.bucket, Key=PREFIX + path)
    try:
        found = node.cli("check")
        assert found.returncode == 1, found.stdout + found.stderr
        assert "index rows whose file is missing: 1" in found.stdout
        assert f"  {path}" in found.stdout
    finally:
        client.put_object(Bucket=stored.bucket, Key=PREFIX + path, Body=kept)
    assert node.cli("check").returncode == 0


def test_the_secret_key_is_in_no_log_or_output(stored: Stored) -> None:
    checked = stored.node.cli("check")
    assert SECRET not in stored.node.log_text()
    assert SECRET not in checked.stdout + checked.stderr


def test_a_failed_upload_is_answered_with_a_failure_and_nothing_is_indexed(
        tmp_path: Path, moto: ServerProcess) -> None:
    bucket = new_bucket(moto)
    node = s3_node(tmp_path / "node", moto, bucket).start()
    try:
        s3_client(moto.url, REGION).delete_bucket(Bucket=bucket)
        write_study(tmp_path / "sent", StudySpec(study_uid=uid(7712), instances_per_series=1,
                                                 rows=16, columns=16))
        result = dcmtk("storescu", "-v", "-aec", node.ae_title, "+sd", "+r", "127.0.0.1",
                       str(node.dicom_port), str(tmp_path / "sent"))
        answer = result.stdout + result.stderr
        assert "Received Store Response (Refused: OutOfResources)" in answer, answer
        assert index_db.rows(node.data_dir, "SELECT count(*) FROM instances") == [(0,)]
        assert incoming_files(node.data_dir) == []
    finally:
        node.stop()


@pytest.mark.skipif(index_db.on_postgresql(),
                    reason="always on PostgreSQL; runs in the SQLite pass already")
async def test_two_instances_on_postgresql_sharing_the_bucket_serve_each_others_instances(
        tmp_path: Path, moto: ServerProcess, postgres: PostgresCluster) -> None:
    bucket = new_bucket(moto)
    url = postgres.create_database("s3_shared")
    first, second = (s3_node(tmp_path / name, moto, bucket, ae_title=name.upper(),
                             database=url) for name in ("nodea", "nodeb"))
    try:
        first.start()
        second.start()
        spec = StudySpec(study_uid=uid(7713), patient_id="S3-SHARED", series=1,
                         instances_per_series=4, rows=16, columns=16)
        files = write_study(tmp_path / "sent", spec)
        sent = dcmtk("storescu", "-aec", first.ae_title, "+sd", "+r", "127.0.0.1",
                     str(first.dicom_port), str(tmp_path / "sent"))
        assert sent.returncode == 0, sent.stdout + sent.stderr
        found = dcmtk("findscu", "-S", "-aec", second.ae_title, "-k", "QueryRetrieveLevel=STUDY",
                      "-k", f"StudyInstanceUID={spec.study_uid}",
                      "-k", "NumberOfStudyRelatedInstances", "-X", "-od", str(tmp_path),
                      "127.0.0.1", str(second.dicom_port))
        assert found.returncode == 0, found.stderr
        answers = [dcmread(p) for p in tmp_path.glob("rsp*.dcm")]
        assert [int(a.NumberOfStudyRelatedInstances) for a in answers] == [4]
        got = tmp_path / "got"
        got.mkdir()
        result = dcmtk("getscu", "-S", "-aec", second.ae_title, "-od", str(got),
                       "-k", "QueryRetrieveLevel=STUDY",
                       "-k", f"StudyInstanceUID={spec.study_uid}",
                       "127.0.0.1", str(second.dicom_port))
        assert result.returncode == 0, result.stdout + result.stderr
        received = {str(dcmread(p).SOPInstanceUID): p for p in got.iterdir()}
        originals = {str(dcmread(p).SOPInstanceUID): p for p in files}
        assert sorted(received) == sorted(originals)
        for sop_uid, path in received.items():
            assert dataset_bytes(path) == dataset_bytes(originals[sop_uid])
        # The second instance never received these: it read them from the bucket into its
        # own cache.
        objects = bucket_objects(moto, bucket)
        cache = second.data_dir / "cache"
        cached = cached_objects(cache)
        assert {PREFIX + path: data for path, data in cached.items()} == objects
        send_the_same_instances_to_both_at_once(first, second, tmp_path / "burst")
        with postgres.connect("s3_shared") as conn:
            rows = dict(conn.execute("SELECT sop_uid, path FROM instances").fetchall())
        assert len(rows) == 4 + BURST
        assert sorted(bucket_objects(moto, bucket)) == sorted(PREFIX + p for p in rows.values())
        for node in (first, second):
            checked = node.cli("check")
            assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        first.stop()
        second.stop()


def send_the_same_instances_to_both_at_once(first: NodeProcess, second: NodeProcess,
                                            folder: Path) -> None:
    """One study of BURST instances sent by two storescu at the same time, one to each node:
    the conditional PUTs and the index race for every instance."""
    write_study(folder, StudySpec(study_uid=uid(7714), patient_id="S3-BURST", series=2,
                                  instances_per_series=BURST // 2, rows=16, columns=16))
    senders = [subprocess.Popen(
        ["storescu", "-aec", node.ae_title, "+sd", "+r", "127.0.0.1", str(node.dicom_port),
         str(folder)], env=PEER_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True) for node in (first, second)]
    outputs = [sender.communicate(timeout=300)[0] for sender in senders]
    assert [s.returncode for s in senders] == [0, 0], outputs


def test_a_deleted_study_leaves_the_bucket_in_the_background(
        tmp_path: Path, moto: ServerProcess) -> None:
    bucket = new_bucket(moto)
    node = s3_node(tmp_path / "node", moto, bucket).start()
    try:
        study_uid = uid(7713)
        write_study(tmp_path / "sent", StudySpec(study_uid=study_uid, instances_per_series=4,
                                                 rows=16, columns=16))
        result = dcmtk("storescu", "-aec", node.ae_title, "+sd", "+r", "127.0.0.1",
                       str(node.dicom_port), str(tmp_path / "sent"))
        assert result.returncode == 0, result.stdout + result.stderr
        assert len(bucket_objects(moto, bucket)) == 4
        request = urllib.request.Request(f"{node.http_url}/api/studies/{study_uid}",
                                         method="DELETE",
                                         headers={"Authorization": node.api_key})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202
        assert index_db.rows(node.data_dir, "SELECT count(*) FROM instances") == [(0,)]
        client = s3_client(moto.url, REGION)
        deadline = time.monotonic() + 60
        while client.list_objects_v2(Bucket=bucket).get("Contents"):
            assert time.monotonic() < deadline, "the objects stayed in the bucket"
            time.sleep(0.1)
    finally:
        node.stop()


def cached_by_worker(node: NodeProcess, study_uid: str) -> dict[str, int]:
    """Worker cache folder -> how many files of the study it holds."""
    found = {folder.name: len(list(folder.glob(f"*/{study_uid}/*.dcm")))
             for folder in (node.data_dir / "cache").glob("worker-*")}
    return {name: count for name, count in found.items() if count}


def test_a_deleted_study_leaves_every_workers_read_cache(
        tmp_path: Path, moto: ServerProcess) -> None:
    node = s3_node(tmp_path / "node", moto, new_bucket(moto))
    node.extra["node"] = {"workers": 2}
    node.start()
    try:
        study = StudySpec(study_uid=uid(7714), patient_id="S3-CACHE", series=1,
                          instances_per_series=20, rows=16, columns=16)
        ae = AE(ae_title="CACHER")
        ae.requested_contexts = StoragePresentationContexts[:100]
        # One association per instance until both workers hold some in their caches (each
        # caches what it stored).
        for i in range(study.instances_per_series):
            assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)
            try:
                assert assoc.send_c_store(make_instance(study, 0, i)).Status == 0x0000
            finally:
                assoc.release()
            if len(cached_by_worker(node, study.study_uid)) == 2:
                break
        assert len(cached_by_worker(node, study.study_uid)) == 2
        request = urllib.request.Request(f"{node.http_url}/api/studies/{study.study_uid}",
                                         method="DELETE",
                                         headers={"Authorization": node.api_key})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 202
        deadline = time.monotonic() + 60
        while cached_by_worker(node, study.study_uid):
            assert time.monotonic() < deadline, cached_by_worker(node, study.study_uid)
            time.sleep(0.1)
    finally:
        node.stop()


def test_readyz_names_the_storage_once_the_bucket_is_gone(
        tmp_path: Path, moto: ServerProcess) -> None:
    bucket = new_bucket(moto)
    node = s3_node(tmp_path / "node", moto, bucket).start()
    try:
        with urllib.request.urlopen(f"{node.http_url}/readyz", timeout=30) as response:
            assert response.status == 200
        s3_client(moto.url, REGION).delete_bucket(Bucket=bucket)
        with pytest.raises(urllib.error.HTTPError) as failing:
            urllib.request.urlopen(f"{node.http_url}/readyz", timeout=30)
        assert failing.value.code == 503
        assert json.loads(failing.value.read())["failing"] == ["storage"]
    finally:
        node.stop()
