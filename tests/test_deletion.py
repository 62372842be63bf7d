"""Deleting studies: gone from every query at once (DELETE /api/studies/{uid}, `python -m node
delete`), files removed in the background by a job that survives SIGKILL, an instance received
again keeps its file, and the index writers never file a new instance under a deleted study's
reused keys."""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind
from sqlalchemy import text

from node.config import config_from_dict
from node.index.deletion_queries import Requester, delete_studies
from node.index.index_writer import AddOutcome, StoredFile
from node.process.runtime import open_services
from node.render.series_metadata import FOLDER as METADATA_FOLDER
from node.render.series_metadata import metadata_file
from node.retention.deletion import BATCH, StudyDeletions
from node.retention.followed_deletions import FollowedDeletions
from node.storage.folder_storage import Storage, aside_path
from tests.factory import StudySpec, make_instance, uid, write_study
from tests.index_db import rows
from tests.peers import NodeProcess
from tests.rest_support import config_dict
from tests.test_index_concurrency import record
from tests.test_quota_instances import shared_database

INSTANCES = 2000
FAST_JOBS = {"heartbeat_seconds": 0.5, "stale_seconds": 2.0, "poll_seconds": 0.2}


def poll(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def http(node: NodeProcess, method: str, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(f"{node.http_url}{path}", method=method,
                                     headers={"Authorization": node.api_key})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
            return response.status, json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def stored_files(node: NodeProcess, study_uid: str) -> list[Path]:
    """The study's files (and files set aside for removal) in the storage folder."""
    return [p for p in (node.data_dir / "storage").glob(f"*/{study_uid}/*") if p.is_file()]


def imported_study(node: NodeProcess, folder: Path, study_uid: str,
                   instances: int = INSTANCES) -> None:
    write_study(folder, StudySpec(study_uid=study_uid, patient_id=f"DEL-{study_uid[-6:]}",
                                  series=4, instances_per_series=instances // 4, rows=8,
                                  columns=8))
    result = node.cli("import", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(stored_files(node, study_uid)) == instances


def c_find(node: NodeProcess, study_uid: str) -> int:
    ae = AE(ae_title="DELETER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)
    try:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study_uid
        answers = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
    finally:
        assoc.release()
    assert answers[-1][0].Status == 0x0000
    return len(answers) - 1


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("deletion") / "node", query_from=("DELETER",),
                          extra={"node": {"workers": 2}, "jobs": FAST_JOBS}).start()
    yield process
    process.stop()


def test_a_large_study_is_deleted_at_once_and_its_files_follow(
        node: NodeProcess, tmp_path: Path) -> None:
    study_uid = uid(6600)
    imported_study(node, tmp_path, study_uid)
    assert c_find(node, study_uid) == 1
    started = time.perf_counter()
    status, body = http(node, "DELETE", f"/api/studies/{study_uid}")
    answered = time.perf_counter() - started
    assert status == 202, body
    assert body["deleted"] == study_uid and body["instances"] == INSTANCES
    print(f"DELETE of {INSTANCES} instances answered in {answered * 1000:.1f} ms")
    assert answered < 0.1, f"the deletion took {answered * 1000:.0f} ms to answer"
    # Gone from every query at once.
    assert c_find(node, study_uid) == 0
    assert http(node, "GET", f"/dicom-web/studies?StudyInstanceUID={study_uid}")[0] == 204
    assert http(node, "GET", f"/dicom-web/studies/{study_uid}/metadata")[0] == 404
    assert rows(node.data_dir, "SELECT count(*) FROM studies WHERE study_uid = :u",
                u=study_uid) == [(0,)]
    # The files follow in the background.
    poll(lambda: not stored_files(node, study_uid))
    poll(lambda: rows(node.data_dir, "SELECT state FROM jobs WHERE kind = 'delete' AND key "
                      "LIKE :k", k=f"{study_uid}@%") == [("done",)])
    assert rows(node.data_dir, "SELECT count(*) FROM deletion_files") == [(0,)]
    [(_, who, detail)] = rows(node.data_dir, "SELECT action, username, detail FROM "
                                   "audit_events WHERE action = 'delete'")
    assert who == "api"
    assert (json.loads(detail) if isinstance(detail, str) else detail) == {
        "studyUID": study_uid, "instances": INSTANCES, "bytes": body["bytes"],
        "reason": "request"}


def test_deleting_a_study_removes_its_series_metadata_files(
        node: NodeProcess, tmp_path: Path) -> None:
    study_uid = uid(6620)
    imported_study(node, tmp_path / "sent", study_uid, instances=8)
    [(series_uid,)] = rows(node.data_dir, "SELECT series_uid FROM series JOIN studies ON "
                           "series.study_pk = studies.id WHERE study_uid = :u LIMIT 1",
                           u=study_uid)
    status, body = http(node, "GET", f"/dicom-web/studies/{study_uid}/series/{series_uid}"
                        "/metadata")
    assert status == 200 and len(body) == 2
    written = node.data_dir / "dicomweb-metadata" / series_uid[-2:] / f"{series_uid}.json"
    assert written.is_file()
    assert http(node, "DELETE", f"/api/studies/{study_uid}")[0] == 202
    poll(lambda: not written.exists())
    # The stored files follow once the node received nothing for a moment (deletion.py).
    poll(lambda: not stored_files(node, study_uid))


def test_deleting_an_unknown_or_malformed_study_is_refused(node: NodeProcess) -> None:
    status, body = http(node, "DELETE", f"/api/studies/{uid(6601)}")
    assert status == 404 and "not stored" in body["error"]
    status, body = http(node, "DELETE", "/api/studies/1.2.abc")
    assert status == 400 and body["field"] == "study"
    request = urllib.request.Request(f"{node.http_url}/api/studies/{uid(6601)}",
                                     method="DELETE")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401


def test_the_cli_deletes_several_studies_and_names_the_unknown_one(
        node: NodeProcess, tmp_path: Path) -> None:
    first, second = uid(6610), uid(6611)
    imported_study(node, tmp_path / "a", first, 8)
    imported_study(node, tmp_path / "b", second, 8)
    result = node.cli("delete", "--study", first, "--study", second, "--study", uid(6612))
    assert result.returncode == 1
    assert f"deleted {first}: 8 instance(s)" in result.stdout
    assert f"not stored: {uid(6612)}" in result.stdout
    assert c_find(node, first) == c_find(node, second) == 0
    poll(lambda: not stored_files(node, first) and not stored_files(node, second))
    who = rows(node.data_dir, "SELECT DISTINCT username FROM audit_events WHERE action = "
               "'delete' AND username LIKE 'cli%'")
    assert who and who[0][0].startswith("cli")


def test_protect_and_unprotect_are_stored_and_audited(node: NodeProcess) -> None:
    study_uid = uid(6620)
    result = node.cli("protect", "--study", study_uid)
    assert result.returncode == 0 and f"{study_uid}: protected" in result.stdout
    assert "(already)" in node.cli("protect", "--study", study_uid).stdout
    assert rows(node.data_dir, "SELECT study_uid FROM protected_studies") == [(study_uid,)]
    assert node.cli("unprotect", "--study", study_uid).returncode == 0
    assert rows(node.data_dir, "SELECT count(*) FROM protected_studies") == [(0,)]
    actions = rows(node.data_dir, "SELECT action FROM audit_events WHERE action LIKE "
                   "'%protect' ORDER BY id")
    assert actions == [("protect",), ("unprotect",)]
    assert node.cli("protect", "--study", "not-a-uid").returncode != 0


@contextmanager
def receiving(node: NodeProcess) -> Iterator[None]:
    """The node's incoming/ changed every 0.1 s, as while it receives: its deletion jobs wait
    for a pause before each batch of files (node/retention/deletion.py). Each change is dated
    a second ahead, so that this thread may be late by almost two."""
    incoming = node.data_dir / "incoming"
    stop = threading.Event()

    def touch() -> None:
        ahead = time.time() + 1
        os.utime(incoming, (ahead, ahead))

    def keep_touching() -> None:
        while not stop.wait(0.1):
            touch()

    touch()
    toucher = threading.Thread(target=keep_touching)
    toucher.start()
    try:
        yield
    finally:
        stop.set()
        toucher.join()


def test_a_deletion_killed_midway_goes_on_at_the_next_start(tmp_path: Path) -> None:
    """Killed with its first batch of files removed, part of the second set aside and the rest
    in place, every time: the job is held there by a directory under the hidden name that one
    file of the second batch would be set aside to (a storage failing: the job keeps its claim
    and tries again). The file is chosen while the node, seemingly receiving, holds the job
    before its first batch."""
    node = NodeProcess(tmp_path / "node", query_from=("DELETER",),
                       extra={"node": {"workers": 1}, "jobs": FAST_JOBS})
    node.start()
    study_uid = uid(6630)
    instances = BATCH + 200  # a second batch of 200 (4 series of 175 instances)
    try:
        imported_study(node, tmp_path / "study", study_uid, instances)
        with receiving(node):
            assert http(node, "DELETE", f"/api/studies/{study_uid}")[0] == 202
            paths = [path for (path,) in rows(node.data_dir, "SELECT path FROM deletion_files "
                                              "ORDER BY id")]
            assert len(paths) == instances
            obstacle = aside_path(node.data_dir / "storage" / paths[BATCH + 100])
            obstacle.mkdir()
        poll(lambda: "removing files failed (IsADirectoryError)" in node.log_text())
        node.kill()
        assert rows(node.data_dir, "SELECT count(*) FROM deletion_files") == [(instances - BATCH,)]
        left = stored_files(node, study_uid)
        assert len(left) == instances - BATCH
        assert len([p for p in left if p.name.startswith(".")]) == 100  # set aside
        obstacle.rmdir()
        node.start()
        poll(lambda: not stored_files(node, study_uid))
        poll(lambda: rows(node.data_dir, "SELECT state FROM jobs WHERE kind = 'delete' AND "
                          "key LIKE :k", k=f"{study_uid}@%") == [("done",)])
        assert rows(node.data_dir, "SELECT count(*) FROM deletion_files") == [(0,)]
    finally:
        node.stop()


def test_a_file_stored_again_or_named_by_a_row_again_is_not_removed(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "storage", tmp_path / "incoming", fsync=False)
    names = ["aa/1.2/old.dcm", "aa/1.2/indexed.dcm", "aa/1.2/new.dcm", "aa/1.2/gone.dcm"]
    for name in names:
        (storage.root / name).parent.mkdir(parents=True, exist_ok=True)
        (storage.root / name).write_bytes(name.encode())
    deleted_at = time.time()
    os.utime(storage.root / names[2], (deleted_at + 5, deleted_at + 5))  # written since
    for name in names[:2]:
        os.utime(storage.root / name, (deleted_at - 5, deleted_at - 5))
    os.utime(storage.root / names[3], (deleted_at - 5, deleted_at - 5))
    # A first attempt set the last one aside, then the node died.
    assert storage.set_aside([names[3]]) == [names[3]]
    aside = storage.set_aside([*names, "aa/1.2/never-there.dcm"])
    assert aside == names
    assert list(storage.listing()) == []  # set aside: no listing (check) sees them
    assert storage.retire(aside, {names[1]}, deleted_at) == (2, 2)
    assert sorted(p.name for p in (storage.root / "aa/1.2").iterdir()) == [
        "indexed.dcm", "new.dcm"]
    storage.remove_empty_folders(names)
    assert (storage.root / "aa/1.2").is_dir()
    for name in ("indexed.dcm", "new.dcm"):
        (storage.root / "aa/1.2" / name).unlink()
    storage.remove_empty_folders(names)
    assert not (storage.root / "aa").exists() and storage.root.is_dir()


async def test_an_instance_of_a_deleted_study_received_again_keeps_its_own_study(
        tmp_path: Path) -> None:
    """On SQLite a new row takes the highest deleted id again: the writer's cached keys of
    the deleted study would file its instance, received anew, under the new study."""
    async with open_services(config_from_dict(config_dict(), base_dir=tmp_path)) as services:
        async def add(p: int, s: int) -> None:
            rec = record(p, s, 0, 0)
            outcome, _ = await services.writer.add(StoredFile(rec, f"{rec.sop_uid}.dcm", 1, "t"))
            assert outcome is AddOutcome.ADDED

        await add(5, 0)
        deleted, _ = await delete_studies(services.engine, [record(5, 0, 0, 0).study_uid],
                                          Requester("test"))
        assert len(deleted) == 1
        await add(6, 0)  # another patient's study: on SQLite, the deleted study's ids
        await add(5, 0)
        async with services.engine.connect() as conn:
            found = (await conn.execute(text(
                "SELECT st.study_uid, i.sop_uid FROM instances i JOIN series se ON "
                "i.series_pk = se.id JOIN studies st ON se.study_pk = st.id"))).all()
    assert sorted(found) == sorted([(record(5, 0, 0, 0).study_uid, record(5, 0, 0, 0).sop_uid),
                                    (record(6, 0, 0, 0).study_uid, record(6, 0, 0, 0).sop_uid)])


async def test_the_workers_of_an_instance_follow_each_deletion_once_in_turn(
        tmp_path: Path) -> None:
    """Following deletions drops what the instance made from the deleted studies: one worker
    at a time, each from the instance's progress whoever wrote it, so that a worker never
    follows again a deletion another one followed (and drops the metadata of a series
    received and made again since)."""
    config = config_from_dict(config_dict(), base_dir=tmp_path)
    async with open_services(config) as services:
        made = []
        for p in range(3):
            rec = record(20 + p, 0, 0, 0)
            await services.writer.add(StoredFile(rec, f"{rec.sop_uid}.dcm", 1, "t"))
            deleted, _ = await delete_studies(services.engine, [rec.study_uid],
                                              Requester("test"))
            assert len(deleted) == 1
            made.append(metadata_file(config.data_dir / METADATA_FOLDER, rec.series_uid))
            made[-1].parent.mkdir(parents=True, exist_ok=True)
            made[-1].write_bytes(b"{}")
        [(last,)] = rows(config.data_dir, "SELECT max(id) FROM jobs WHERE kind = 'delete'")
        first, second = StudyDeletions(services), StudyDeletions(services)
        with FollowedDeletions(config.data_dir).turn() as turn:  # a third worker's turn
            assert turn is not None and turn.seen == 0
            assert await second.follow_deletions(FollowedDeletions(config.data_dir)) == 0
        assert all(path.exists() for path in made)
        assert await first.follow_deletions(FollowedDeletions(config.data_dir)) == 3
        assert not any(path.exists() for path in made)
        made[0].write_bytes(b"{}")  # the series received again, its metadata made again
        assert await second.follow_deletions(FollowedDeletions(config.data_dir)) == 0
        assert made[0].exists()
        with FollowedDeletions(config.data_dir).turn() as turn:
            assert turn is not None and turn.seen == last


def test_the_files_of_a_deletion_wait_while_the_node_receives(
        node: NodeProcess, tmp_path: Path) -> None:
    """Removing files costs the disk about what storing them does: the deletion job removes
    them once no worker of the node received anything for a moment, not meanwhile."""
    study_uid = uid(6640)
    imported_study(node, tmp_path, study_uid, instances=8)
    sent = threading.Event()
    stop = threading.Event()

    def send() -> None:
        ae = AE(ae_title="DELETER")
        ae.requested_contexts = StoragePresentationContexts[:100]
        assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)
        busy = StudySpec(study_uid=uid(6641), patient_id="DEL-BUSY", rows=8, columns=8)
        try:
            for i in itertools.count():
                if stop.is_set():
                    return
                assert assoc.send_c_store(make_instance(busy, 0, i)).Status == 0x0000
                sent.set()
        finally:
            assoc.release()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        sending = pool.submit(send)
        try:
            poll(sent.is_set)
            assert http(node, "DELETE", f"/api/studies/{study_uid}")[0] == 202
            poll(lambda: rows(node.data_dir, "SELECT state FROM jobs WHERE kind = 'delete' "
                              "AND key LIKE :k", k=f"{study_uid}@%") in ([("running",)],
                                                                        [("done",)]))
            receiving_until = time.monotonic() + 1.5
            while time.monotonic() < receiving_until:
                assert len(stored_files(node, study_uid)) == 8, "removed while receiving"
                time.sleep(0.05)
        finally:
            stop.set()
            sending.result()
    poll(lambda: not stored_files(node, study_uid))
    poll(lambda: rows(node.data_dir, "SELECT state FROM jobs WHERE kind = 'delete' AND key "
                      "LIKE :k", k=f"{study_uid}@%") == [("done",)])


def test_a_study_deleted_through_one_instance_leaves_no_metadata_in_the_other(
        tmp_path: Path) -> None:
    """Each instance keeps the series metadata it made in its own data folder; whichever
    removes a deleted study's files, both drop that metadata."""
    shared = tmp_path / "shared"
    shared.mkdir()
    nodes = [NodeProcess(tmp_path / name, ae_title=name.upper(), extra={
        "node": {"workers": 1}, "jobs": FAST_JOBS,
        "database": {"url": shared_database(shared)},
        "storage": {"root": str(shared / "storage")}}) for name in ("nodea", "nodeb")]
    nodes[0].start()  # the first creates the schema
    nodes[1].start()
    try:
        study_uid = uid(6650)
        write_study(tmp_path / "sent", StudySpec(study_uid=study_uid, patient_id="DEL-TWO",
                                                 instances_per_series=4, rows=8, columns=8))
        imported = nodes[0].cli("import", str(tmp_path / "sent"))
        assert imported.returncode == 0, imported.stdout + imported.stderr
        [(series_uid,)] = rows(shared, "SELECT series_uid FROM series JOIN studies ON "
                               "series.study_pk = studies.id WHERE study_uid = :u LIMIT 1",
                               u=study_uid)
        made = []
        for node in nodes:
            status, _ = http(node, "GET", f"/dicom-web/studies/{study_uid}/series/"
                             f"{series_uid}/metadata")
            assert status == 200
            made.append(node.data_dir / "dicomweb-metadata" / series_uid[-2:]
                        / f"{series_uid}.json")
            assert made[-1].is_file()
        assert http(nodes[0], "DELETE", f"/api/studies/{study_uid}")[0] == 202
        poll(lambda: not any(path.exists() for path in made))
    finally:
        for node in nodes:
            node.stop()
