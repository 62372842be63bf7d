"""A POST import is a job of the jobs table: a node killed (SIGKILL) in the middle of one and
started again finishes it, with the request's credentials unsealed from the database, without
fetching again what was already indexed, and leaves no half file and no secret behind."""

from __future__ import annotations

import io
import json
import re
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from tests.cloud_peers import ServerProcess, moto, s3_put
from tests.factory import StudySpec, make_instance, uid
from tests.index_db import dump, rows
from tests.peers import NodeProcess

__all__ = ["moto"]  # session fixture, used by name

OBJECTS = 400
STUDY = uid(470, 1)
ACCESS_KEY = "AKIARESUMEDIMPORTKEY1"
SECRET_KEY = "resumed/Import+Secret0123456789abcdefXYZ"


def _post(node: NodeProcess, body: dict[str, Any]) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{node.http_url}/ngv/v1/obscurl", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": node.api_key, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read().decode()


def _wait(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _indexed(node: NodeProcess) -> int:
    return int(rows(node.data_dir, "SELECT count(*) FROM instances")[0][0])


def _job(node: NodeProcess) -> tuple[str, str, int]:
    found = rows(node.data_dir, "SELECT state, outcome, attempts FROM jobs "
                                "WHERE kind = 'post-import'")
    assert len(found) == 1, found
    state, outcome, attempts = found[0]
    return str(state), str(outcome), int(attempts)


@pytest.fixture(scope="module")
def bucket(moto: ServerProcess) -> tuple[str, dict[str, str]]:
    """OBJECTS DICOM files in a bucket of their own: key -> SOP Instance UID."""
    spec = StudySpec(study_uid=STUDY, patient_id="RESUME", rows=256, columns=256,
                     instances_per_series=OBJECTS)
    objects, keys = {}, {}
    for index in range(OBJECTS):
        ds = make_instance(spec, 0, index)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        key = f"resume/{index:04d}.dcm"
        objects[key] = out.getvalue()
        keys[key] = str(ds.SOPInstanceUID)
    name = "viewnode-resume-test"
    s3_put(moto.url, name, objects)
    return name, keys


def _body(bucket: str, keys: dict[str, str]) -> dict[str, Any]:
    return {
        "username": "john", "role": "diagnostic",
        "studies": [{
            "storage": {"type": "aws-bucket", "name": bucket, "region": "eu-central-1",
                        "accessKey": ACCESS_KEY, "secretAccessKey": SECRET_KEY},
            "studyInstanceUID": STUDY, "patientID": "RESUME",
            "series": [{"seriesInstanceUID": f"{STUDY}.1", "instances": [
                {"sopInstanceUID": sop, "file": key, "mimeType": "application/dicom"}
                for key, sop in keys.items()]}],
        }],
    }


def test_a_node_killed_mid_import_finishes_it_after_a_restart(
    tmp_path: Path, moto: ServerProcess, bucket: tuple[str, dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory
) -> None:
    name, keys = bucket
    node = NodeProcess(tmp_path / "node", extra={
        "cloud": {"aws_endpoint_url": moto.url},
        "sources": {"fetch_concurrency": 1, "retry_backoff_seconds": 0.05},
        "storage": {"fsync": False},
        "jobs": {"heartbeat_seconds": 0.2, "stale_seconds": 1.0, "poll_seconds": 0.2},
    })
    node.write_config()
    assert node.cli("role", "add", "diagnostic", "--allow", "search").returncode == 0
    node.start()
    try:
        status, token = _post(node, _body(name, keys))
        assert status == 200 and re.fullmatch(r"[0-9a-f]{64}", token)
        # While it runs: the secrets are in the database only sealed.
        _wait(lambda: _indexed(node) >= 40, 120, "the import to be under way")
        assert rows(node.data_dir, "SELECT count(*) FROM sealed_credentials")[0][0] == 1
        stored = dump(node.data_dir)
        assert SECRET_KEY.encode() not in stored and ACCESS_KEY.encode() not in stored
        node.kill()
        at_kill = _indexed(node)
        assert at_kill < OBJECTS, "the import ended before the node was killed"
        assert _job(node)[0] == "running"

        node.start()
        state, outcome, attempts = _wait(
            lambda: _job(node) if _job(node)[0] in ("done", "failed") else None, 180,
            "the resumed import to end")
        assert (state, attempts) == ("done", 2), outcome
    finally:
        node.stop()

    indexed = rows(node.data_dir, "SELECT sop_uid, path, size FROM instances")
    assert {row[0] for row in indexed} == set(keys.values())
    storage = node.data_dir / "storage"
    for sop_uid, path, size in indexed:
        stored_file = storage / path
        assert stored_file.stat().st_size == size
        assert str(dcmread(stored_file, stop_before_pixels=True).SOPInstanceUID) == sop_uid
    assert sorted(p for p in storage.rglob("*") if p.is_file()) == sorted(
        storage / row[1] for row in indexed)
    assert list((node.data_dir / "incoming").iterdir()) == []

    (sources,) = rows(node.data_dir, "SELECT sources FROM viewing_contexts")[0]
    progress = (json.loads(sources) if isinstance(sources, str) else sources)["import"]
    assert (progress["state"], progress["total"], progress["done"], progress["failed"],
            progress["failures"]) == ("done", OBJECTS, OBJECTS, 0, [])
    assert progress["studies"] == {STUDY: {"done": OBJECTS, "failed": 0}}
    assert rows(node.data_dir, "SELECT study_uid, state, message FROM context_studies") == [
        (STUDY, "available", "")]
    # Nothing that only a resumed import needed is kept.
    assert rows(node.data_dir, "SELECT count(*) FROM sealed_credentials")[0][0] == 0
    assert rows(node.data_dir, "SELECT count(*) FROM import_outcomes")[0][0] == 0

    # What was indexed before the kill was not fetched again: at most the one object in
    # flight (fetch_concurrency = 1) was fetched twice.
    moto_log = (tmp_path_factory.getbasetemp() / "moto.log").read_text(errors="replace")
    fetches = Counter(re.findall(rf'"GET /{name}/(resume/\d+\.dcm) HTTP', moto_log))
    assert set(fetches) == set(keys)
    assert sum(count - 1 for count in fetches.values()) <= 1, fetches.most_common(3)

    # The secrets reached neither the database nor the log.
    stored = dump(node.data_dir)
    log_text = node.log_text()
    assert "resuming an import" in log_text
    for secret in (ACCESS_KEY, SECRET_KEY):
        assert secret.encode() not in stored
        assert secret not in log_text
