"""A POST import is a job of the jobs table: a node killed (SIGKILL) in the middle of one and
started again finishes it, with the request's credentials unsealed from the database, without
fetching again what was already indexed, and leaves no half file and no secret behind."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from sqlalchemy import update

from node.config import Config
from node.index.job_models import Job, SealedCredentials
from node.process.jobs import GIVEN_UP
from node.process.runtime import open_services
from node.services import NodeServices
from node.sources import FetchPolicy, Importer, ImportProgress, parse_request, plan_import
from node.sources.import_jobs import ImportJobs
from node.sources.post_context import JOB_KIND, issue_context
from node.sources.storage_mapping import MappingTable, StorageMapping, add_mapping
from node.viewing.roles import add_role
from tests import index_db
from tests.cloud_peers import ServerProcess, moto, s3_put
from tests.factory import StudySpec, make_instance, uid, write_study
from tests.index_db import dump, rows
from tests.peers import NodeProcess, incoming_files
from tests.post_examples import example
from tests.postgres_peer import PostgresCluster
from tests.source_fixtures import node_config

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


Query = Callable[[str], list[tuple[Any, ...]]]


def _on(node: NodeProcess) -> Query:
    return _on_folder(node.data_dir)


def _on_folder(data_dir: Path) -> Query:
    return lambda sql: rows(data_dir, sql)


def _indexed(query: Query) -> int:
    return int(query("SELECT count(*) FROM instances")[0][0])


def _job(query: Query) -> tuple[str, str, int, str]:
    found = query("SELECT state, outcome, attempts, claimed_by FROM jobs "
                  "WHERE kind = 'post-import'")
    assert len(found) == 1, found
    state, outcome, attempts, claimed_by = found[0]
    return str(state), str(outcome), int(attempts), str(claimed_by)


def _ended(query: Query) -> tuple[str, str, int, str]:
    return _wait(lambda: _job(query) if _job(query)[0] in ("done", "failed") else None, 180,
                 "the resumed import to end")


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
    moto_log = _moto_log(tmp_path_factory)
    since = moto_log.stat().st_size
    node = NodeProcess(tmp_path / "node", extra={
        "cloud": {"aws_endpoint_url": moto.url},
        "sources": {"fetch_concurrency": 1, "retry_backoff_seconds": 0.05},
        "storage": {"fsync": False},
        "jobs": {"heartbeat_seconds": 0.2, "stale_seconds": 3.0, "poll_seconds": 0.2},
    })
    node.write_config()
    assert node.cli("role", "add", "diagnostic", "--allow", "search").returncode == 0
    node.start()
    try:
        status, token = _post(node, _body(name, keys))
        assert status == 200 and re.fullmatch(r"[0-9a-f]{64}", token)
        # While it runs: the secrets are in the database only sealed.
        query = _on(node)
        _wait(lambda: _indexed(query) >= 40, 120, "the import to be under way")
        assert query("SELECT count(*) FROM sealed_credentials")[0][0] == 1
        stored = dump(node.data_dir)
        assert SECRET_KEY.encode() not in stored and ACCESS_KEY.encode() not in stored
        node.kill()
        assert _indexed(query) < OBJECTS, "the import ended before the node was killed"
        assert _job(query)[0] == "running"

        node.start()
        state, outcome, attempts, _ = _ended(query)
        assert (state, attempts) == ("done", 2), outcome
    finally:
        node.stop()

    _assert_finished(query, node.data_dir / "storage", keys)
    assert incoming_files(node.data_dir) == []
    _assert_fetched_once(moto_log, since, name, keys)

    # The secrets reached neither the database nor the log.
    stored = dump(node.data_dir)
    log_text = node.log_text()
    assert "resuming an import" in log_text
    for secret in (ACCESS_KEY, SECRET_KEY):
        assert secret.encode() not in stored
        assert secret not in log_text


@pytest.mark.skipif(index_db.on_postgresql(),
                    reason="always on PostgreSQL; runs in the SQLite pass already")
def test_another_instance_on_the_same_postgresql_takes_over_a_dead_ones_import(
    tmp_path: Path, moto: ServerProcess, bucket: tuple[str, dict[str, str]],
    postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    name, keys = bucket
    moto_log = _moto_log(tmp_path_factory)
    since = moto_log.stat().st_size
    database = "post_import_takeover"
    url = postgres.create_database(database)
    shared = tmp_path / "shared"
    nodes = {ae: NodeProcess(tmp_path / ae.lower(), ae_title=ae, extra={
        "database": {"url": url},
        "http": {"instance_name": ae},
        "cloud": {"aws_endpoint_url": moto.url},
        "sources": {"fetch_concurrency": 1, "retry_backoff_seconds": 0.05,
                    "credentials_key_file": str(shared / "credentials.key")},
        "storage": {"root": str(shared / "storage"), "fsync": False},
        "jobs": {"heartbeat_seconds": 0.2, "stale_seconds": 3.0, "poll_seconds": 0.2},
    }) for ae in ("NODEA", "NODEB")}

    def query(sql: str) -> list[tuple[Any, ...]]:
        with postgres.connect(database) as conn:
            return list(conn.execute(sql).fetchall())

    try:
        for node in nodes.values():
            node.start()
        assert nodes["NODEA"].cli("role", "add", "diagnostic").returncode == 0
        status, _ = _post(nodes["NODEA"], _body(name, keys))
        assert status == 200
        _wait(lambda: _indexed(query) >= 40, 120, "the import to be under way")
        first = _job(query)[3].split("/")[0]
        nodes[first].kill()
        assert _indexed(query) < OBJECTS, "the import ended before the node was killed"
        state, outcome, attempts, claimed_by = _ended(query)
        survivor = next(ae for ae in nodes if ae != first)
        assert (state, attempts, claimed_by.split("/")[0]) == ("done", 2, survivor), outcome
    finally:
        for node in nodes.values():
            node.stop()
    _assert_finished(query, shared / "storage", keys)
    assert incoming_files(tmp_path / survivor.lower() / "data") == []
    _assert_fetched_once(moto_log, since, name, keys)
    assert "resuming an import" in nodes[survivor].log_text()


async def _import_and_unplace(services: NodeServices, bucket: str, keys: dict[str, str],
                              sop_uid: str) -> tuple[Path, bytes]:
    """Import `keys` from `bucket`, then take away the stored file of `sop_uid`, as an instance
    killed between the commit and the rename leaves it; that file's path and content."""
    config = services.config
    plan = plan_import(parse_request(_body(bucket, keys)), MappingTable([]), config)
    await Importer(services, FetchPolicy.from_config(config)).run(plan.sources, ImportProgress())
    (path,) = rows(config.data_dir, "SELECT path FROM instances WHERE sop_uid = :sop",
                   sop=sop_uid)[0]
    stored = services.storage.local_path(path)
    content = stored.read_bytes()
    stored.unlink()
    return stored, content


async def _resume(services: NodeServices, bucket: str, keys: dict[str, str]) -> ImportProgress:
    config = services.config
    progress = ImportProgress()
    plan = plan_import(parse_request(_body(bucket, keys)), MappingTable([]), config)
    await Importer(services, FetchPolicy.from_config(config)).run(plan.sources, progress,
                                                                  resumed=True)
    return progress


async def test_a_resumed_import_puts_back_a_file_a_dead_instance_left_unplaced(
    tmp_path: Path, moto: ServerProcess, bucket: tuple[str, dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory
) -> None:
    """An instance killed between an index commit and the rename of its file leaves the row
    and the file in its own incoming/: another instance resuming the import fetches that one
    object again and puts it where the row says, and fetches nothing else."""
    name, keys = bucket
    some = dict(list(keys.items())[:5])
    config = node_config(tmp_path / "node", cloud={"aws_endpoint_url": moto.url})
    async with open_services(config) as services:
        stored, content = await _import_and_unplace(services, name, some,
                                                    some["resume/0002.dcm"])
        moto_log = _moto_log(tmp_path_factory)
        since = moto_log.stat().st_size
        progress = await _resume(services, name, some)
    assert (progress.done, progress.failed, progress.duplicates) == (5, 0, 0)
    assert stored.read_bytes() == content
    with moto_log.open("rb") as log:
        log.seek(since)
        fetched = re.findall(rf'"GET /{name}/(resume/\d+\.dcm) HTTP', log.read().decode())
    assert fetched == ["resume/0002.dcm"]


async def test_a_file_put_back_for_an_unplaced_row_must_be_whole(
    tmp_path: Path, moto: ServerProcess
) -> None:
    """Putting a fetched file back where a committed row says skips the ingest path, so it is
    walked whole there too: one of the row's size whose pixel data runs past the end is
    refused, and nothing is put in place."""
    spec = StudySpec(study_uid=STUDY, patient_id="RESUME")
    ds = make_instance(spec, 0, OBJECTS + 1)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    whole = out.getvalue()
    pixels = whole.rfind(b"\xe0\x7f\x10\x00")  # (7FE0,0010) OW, its length at +8
    cut = whole[:pixels + 8] + (0xFFFFFFF0).to_bytes(4, "little") + whole[pixels + 12:]
    assert len(cut) == len(whole)
    name, keys = "viewnode-resume-cut", {"cut/0001.dcm": str(ds.SOPInstanceUID)}
    s3_put(moto.url, name, {"cut/0001.dcm": whole})
    config = node_config(tmp_path / "node", cloud={"aws_endpoint_url": moto.url})
    async with open_services(config) as services:
        stored, _ = await _import_and_unplace(services, name, keys, str(ds.SOPInstanceUID))
        s3_put(moto.url, name, {"cut/0001.dcm": cut})
        progress = await _resume(services, name, keys)
    assert (progress.done, progress.failed) == (0, 1)
    assert not stored.exists()
    assert incoming_files(config.data_dir) == []


async def test_an_import_whose_node_died_each_time_is_given_up_in_its_context(
    tmp_path: Path
) -> None:
    config = node_config(tmp_path / "node", jobs={
        "heartbeat_seconds": 0.2, "poll_seconds": 0.05, "stale_seconds": 1.0})
    body = example("wado-uri", url="http://127.0.0.1:9/wado",
                   httpHeaders={"Authorization": SECRET_KEY})
    # As its instances left it: claimed max_attempts times, its heartbeat long gone.
    await _issue_then_run(config, body, update(Job).where(Job.kind == JOB_KIND).values(
        state="running", claimed_by="dead/1", attempts=config.jobs.max_attempts,
        heartbeat_at=datetime.now(UTC) - timedelta(minutes=5)))
    query = _on_folder(config.data_dir)
    assert query("SELECT state, outcome FROM jobs") == [("failed", GIVEN_UP)]
    (sources,) = query("SELECT sources FROM viewing_contexts")[0]
    progress = (json.loads(sources) if isinstance(sources, str) else sources)["import"]
    assert progress["state"] == "stopped"
    assert "import given up after 3 tries" in progress["failures"][0]["message"]
    (state, message), = query("SELECT state, message FROM context_studies")
    assert state == "failed" and "given up" in message
    assert query("SELECT count(*) FROM sealed_credentials") == [(0,)]


async def test_an_import_resumed_after_its_token_expired_fails_for_want_of_credentials(
    tmp_path: Path
) -> None:
    config = node_config(tmp_path / "node")
    body = example("aws-bucket", accessKey=ACCESS_KEY, secretAccessKey=SECRET_KEY)
    await _issue_then_run(config, body, update(SealedCredentials).values(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    query = _on_folder(config.data_dir)
    assert query("SELECT state FROM jobs") == [("done",)]
    (state, message), = query("SELECT state, message FROM context_studies")
    assert state == "failed"
    assert "credentials are no longer kept (its token expired" in message
    assert query("SELECT count(*) FROM sealed_credentials") == [(0,)]


async def test_an_orderly_stop_hands_a_folder_import_back_and_the_next_start_finishes_it(
    tmp_path: Path
) -> None:
    volume = tmp_path / "volume"
    paths = write_study(volume / "f", StudySpec(study_uid=uid(471, 1), instances_per_series=300))
    config = node_config(tmp_path / "node", sources={"fetch_concurrency": 1})
    table = MappingTable([StorageMapping("/storage", str(volume))])
    body = {"username": "john", "role": "diagnostic", "folder": {"path": "/storage/f"}}
    query = _on_folder(config.data_dir)
    async with open_services(config) as services:
        await add_role(services.sessions, "diagnostic", [])
        plan = plan_import(parse_request(body), table, config)
        await issue_context(services, plan, ImportProgress())
        await add_mapping(services.sessions, "/storage", str(volume))
        jobs = ImportJobs(services)
        jobs.start()
        try:
            while _indexed(query) < 20:
                await asyncio.sleep(0.02)
        finally:
            await jobs.close()
        assert _indexed(query) < len(paths), "the import ended before the stop"
        assert query("SELECT state, attempts FROM jobs") == [("queued", 0)]
        (sources,) = query("SELECT sources FROM viewing_contexts")[0]
        progress = (json.loads(sources) if isinstance(sources, str) else sources)["import"]
        assert progress["state"] == "interrupted" and 0 < progress["done"] < len(paths)
        (state, message), = query("SELECT state, message FROM context_studies")
        assert state == "retrieving" and "resumes it" in message
        await run_imports_until_idle(services, 120)
    (sources,) = query("SELECT sources FROM viewing_contexts")[0]
    progress = (json.loads(sources) if isinstance(sources, str) else sources)["import"]
    assert (progress["state"], progress["total"], progress["done"], progress["failed"]) == (
        "done", len(paths), len(paths), 0)
    assert query("SELECT state, message FROM context_studies") == [("available", "")]
    assert _indexed(query) == len(paths)
    assert query("SELECT count(*) FROM import_outcomes") == [(0,)]


async def run_imports_until_idle(services: NodeServices, seconds: float) -> None:
    """This instance's import runner, until it has nothing left to do."""
    jobs = ImportJobs(services)
    jobs.start()
    try:
        await asyncio.wait_for(jobs.wait_idle(), seconds)
    finally:
        await jobs.close()


async def _issue_then_run(config: Config, body: dict[str, Any], change: Any) -> None:
    """Issue the body's context and import job, apply `change` (an UPDATE) as a past run
    would have left the database, then let this instance's import runner do what it can."""
    async with open_services(config) as services:
        await add_role(services.sessions, "diagnostic", [])
        plan = plan_import(parse_request(body), MappingTable([]), config)
        await issue_context(services, plan, ImportProgress())
        async with services.sessions() as session:
            await session.execute(change)
            await session.commit()
        await run_imports_until_idle(services, 30)


def _assert_finished(query: Query, storage: Path, keys: dict[str, str]) -> None:
    """Every instance indexed once, whole; the context says so; nothing left to resume."""
    indexed = query("SELECT sop_uid, path, size FROM instances")
    assert {row[0] for row in indexed} == set(keys.values())
    for sop_uid, path, size in indexed:
        stored_file = storage / path
        assert stored_file.stat().st_size == size
        assert str(dcmread(stored_file, stop_before_pixels=True).SOPInstanceUID) == sop_uid
    assert sorted(p for p in storage.rglob("*") if p.is_file()) == sorted(
        storage / row[1] for row in indexed)
    (sources,) = query("SELECT sources FROM viewing_contexts")[0]
    progress = (json.loads(sources) if isinstance(sources, str) else sources)["import"]
    assert (progress["state"], progress["total"], progress["done"], progress["failed"],
            progress["failures"]) == ("done", OBJECTS, OBJECTS, 0, [])
    assert progress["studies"] == {STUDY: {"done": OBJECTS, "failed": 0}}
    assert query("SELECT study_uid, state, message FROM context_studies") == [
        (STUDY, "available", "")]
    # Nothing that only a resumed import needed is kept.
    assert query("SELECT count(*) FROM sealed_credentials")[0][0] == 0
    assert query("SELECT count(*) FROM import_outcomes")[0][0] == 0


def _moto_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "moto.log"


def _assert_fetched_once(moto_log: Path, since: int, name: str, keys: dict[str, str]) -> None:
    """What was indexed before the kill was not fetched again: at most the one object in
    flight (fetch_concurrency = 1) was fetched twice. `since`: the log's size before."""
    with moto_log.open("rb") as log:
        log.seek(since)
        moto_log_text = log.read().decode(errors="replace")
    fetches = Counter(re.findall(rf'"GET /{name}/(resume/\d+\.dcm) HTTP', moto_log_text))
    assert set(fetches) == set(keys)
    assert sum(count - 1 for count in fetches.values()) <= 1, fetches.most_common(3)
