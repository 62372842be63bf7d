"""The storage quota ([storage] max_bytes, max_studies, full_policy): the least recently used
studies are recycled first, never one a live token pins or one protected; "reject" answers
0xA700 and the node keeps serving; under four associations the limit holds within an
instance's size; a node killed while recycling loses nothing it still indexes."""

from __future__ import annotations

import concurrent.futures
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from pynetdicom import AE, StoragePresentationContexts
from pynetdicom.sop_class import Verification

from tests.factory import StudySpec, make_instance, uid, write_study
from tests.index_db import rows
from tests.peers import NodeProcess, dcmtk
from tests.post_examples import example
from tests.source_fixtures import write_spec_files
from tests.test_post_obscurl import opened, start_api

T = TypeVar("T")
FAST_JOBS = {"heartbeat_seconds": 0.5, "stale_seconds": 2.0, "poll_seconds": 0.2}
PER_STUDY = 10


def poll(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def spec(n: int) -> StudySpec:
    return StudySpec(study_uid=uid(5500 + n), patient_id=f"QUOTA{n}", series=1,
                     instances_per_series=PER_STUDY, rows=16, columns=16)


def study_bytes(folder: Path) -> int:
    """What a study of spec() takes once imported (files are stored as they are)."""
    files = write_study(folder, spec(99))
    return sum(p.stat().st_size for p in files)


def stored_studies(node: NodeProcess) -> set[str]:
    return {row[0] for row in rows(node.data_dir, "SELECT study_uid FROM studies")}


def import_study(node: NodeProcess, folder: Path, n: int) -> None:
    write_study(folder / str(n), spec(n))
    result = node.cli("import", str(folder / str(n)))
    assert result.returncode == 0, result.stdout + result.stderr


def totals(node: NodeProcess) -> tuple[int, int]:
    [(count, size)] = rows(node.data_dir, "SELECT count(*), coalesce(sum(size_bytes), 0) "
                           "FROM studies")
    return int(count), int(size)


def quota_node(folder: Path, workers: int = 1, **storage: Any) -> NodeProcess:
    return NodeProcess(folder, extra={"node": {"workers": workers}, "storage": storage,
                                      "jobs": FAST_JOBS})


def test_the_least_recently_used_go_first_never_a_pinned_or_protected_one(
        tmp_path: Path) -> None:
    size = study_bytes(tmp_path / "measure")
    # Three studies stay below 95% of the limit; a fourth recycles one (85% less one study
    # leaves room for two).
    limit = int(size * 3.8)
    node = quota_node(tmp_path / "node", max_bytes=limit).start()
    try:
        for n in (0, 1, 2):
            import_study(node, tmp_path, n)
        # Study 0 retrieved from the node: used after 1 and 2 were stored.
        got = dcmtk("getscu", "-S", "-aec", node.ae_title, "-od", str(tmp_path),
                    "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={uid(5500)}",
                    "127.0.0.1", str(node.dicom_port))
        assert got.returncode == 0, got.stdout + got.stderr
        poll(lambda: rows(node.data_dir, "SELECT used_at FROM studies WHERE study_uid = :u",
                          u=uid(5500))[0][0] is not None)
        import_study(node, tmp_path, 3)
        assert stored_studies(node) == {uid(5500), uid(5502), uid(5503)}  # 1: least used
        assert totals(node)[1] <= limit

        # A live token pins study 2, the least recently used now: 0 goes instead.
        assert node.cli("role", "add", "quota", "--allow", "search").returncode == 0
        request = urllib.request.Request(
            f"{node.http_url}/ngv/obscurl?username=u&role=quota&sourceNodes=&"
            f"studyUID={uid(5502)}", headers={"Authorization": node.api_key})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        import_study(node, tmp_path, 4)
        assert stored_studies(node) == {uid(5502), uid(5503), uid(5504)}

        # Study 3 protected: of the others only 4 may go, and it does.
        assert node.cli("protect", "--study", uid(5503)).returncode == 0
        import_study(node, tmp_path, 5)
        assert stored_studies(node) == {uid(5502), uid(5503), uid(5505)}
        recycled = rows(node.data_dir, "SELECT username, detail FROM audit_events WHERE "
                        "action = 'delete' ORDER BY id")
        assert [who for who, _ in recycled] == ["recycle"] * 3
        assert all("max_bytes" in str(detail) for _, detail in recycled)
        poll(lambda: not any((node.data_dir / "storage").glob(f"*/{uid(5501)}/*")))
    finally:
        node.stop()


def test_reject_answers_a700_and_the_node_keeps_serving(tmp_path: Path) -> None:
    node = quota_node(tmp_path / "node", max_studies=1, full_policy="reject").start()
    try:
        ae = AE(ae_title="QUOTA")
        ae.requested_contexts = StoragePresentationContexts[:100]
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)
        try:
            assert assoc.send_c_store(make_instance(spec(10), 0, 0)).Status == 0x0000
            refused = assoc.send_c_store(make_instance(spec(11), 0, 0))
            assert refused.Status == 0xA700
            assert assoc.send_c_echo().Status == 0x0000
            assert assoc.send_c_store(make_instance(spec(10), 0, 1)).Status == 0x0000
        finally:
            assoc.release()
        assert stored_studies(node) == {uid(5510)}
        assert not any((node.data_dir / "storage").glob(f"*/{uid(5511)}/*"))
    finally:
        node.stop()


def test_recycling_starts_in_the_background_before_the_limit_is_reached(
        tmp_path: Path) -> None:
    """Past 95% of a limit the node recycles down to 85% while storing goes on, instead of
    finding out at the limit itself and holding the instance there until room is made."""
    node = quota_node(tmp_path / "node", max_studies=40).start()
    try:
        ae = AE(ae_title="QUOTA")
        ae.requested_contexts = StoragePresentationContexts[:100]
        assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)
        try:
            statuses = [int(assoc.send_c_store(make_instance(spec(200 + n), 0, 0)).Status)
                        for n in range(39)]  # 39 of 40: past 95%, not at the limit
        finally:
            assoc.release()
        assert statuses == [0] * 39
        poll(lambda: totals(node)[0] <= 34)  # 85% of 40: below the low-water mark
        assert uid(5700) not in stored_studies(node)  # the least recently stored went
        assert rows(node.data_dir, "SELECT count(*) FROM audit_events WHERE username = "
                    "'recycle'")[0][0] >= 3
    finally:
        node.stop()


def test_recycling_by_bytes_makes_room_down_to_the_low_water_mark_at_once(
        tmp_path: Path) -> None:
    """Past 95% of max_bytes one recycling takes the totals below 85% of it: the node recycles
    a tenth of its limit at a time, not a study or two each time it passes 95%."""
    instance = len(make_instance(spec(300), 0, 0).PixelData) + 2048  # above any header
    limit = 40 * instance
    node = quota_node(tmp_path / "node", max_bytes=limit).start()
    try:
        ae = AE(ae_title="QUOTA")
        ae.requested_contexts = StoragePresentationContexts[:100]
        assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)
        try:
            for n in range(80):  # one study each, until the first recycling
                assert assoc.send_c_store(make_instance(spec(300 + n), 0, 0)).Status == 0
                if rows(node.data_dir, "SELECT count(*) FROM jobs WHERE kind = 'delete'"
                        )[0][0]:
                    break
        finally:
            assoc.release()
        assert rows(node.data_dir, "SELECT count(*) FROM jobs WHERE kind = 'delete'") == [(1,)]
        # What was stored by the recycling's commit (each instance is a study of its own; the
        # loop may have sent one more before it saw the recycling).
        [(kept,)] = rows(node.data_dir, "SELECT coalesce(sum(size_bytes), 0) FROM studies "
                         "WHERE updated_at <= (SELECT created_at FROM jobs WHERE kind = "
                         "'delete')")
        assert kept <= limit * 0.85
    finally:
        node.stop()


def store_study(node: NodeProcess, study: StudySpec) -> list[int]:
    ae = AE(ae_title="QUOTA")
    ae.requested_contexts = StoragePresentationContexts[:100]
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)
    try:
        return [int(assoc.send_c_store(make_instance(study, 0, i)).Status)
                for i in range(study.instances_per_series)]
    finally:
        assoc.release()


def test_a_study_being_exported_is_not_recycled_until_the_export_ends(tmp_path: Path) -> None:
    node = quota_node(tmp_path / "node", max_studies=2).start()
    try:
        other, third = spec(80), replace(spec(82), instances_per_series=1)
        # 8 MiB of pixels: the image outgrows what the sockets buffer, so the export waits
        # for its reader below.
        exported = replace(spec(81), instances_per_series=16, rows=512, columns=512)
        assert node.cli("protect", "--study", other.study_uid).returncode == 0
        assert store_study(node, other) == [0] * PER_STUDY
        assert store_study(node, exported) == [0] * 16

        reader = socket.socket()
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(("127.0.0.1", node.http_port))
        try:
            reader.sendall(f"GET /webdv/getIso?studyUID={exported.study_uid} HTTP/1.1\r\n"
                           f"Host: node\r\nAuthorization: {node.api_key}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += reader.recv(1)
            assert head.startswith(b"HTTP/1.1 200"), head
            # The exported study is the only one that may go, and it may not while it streams.
            assert store_study(node, third) == [0xA700]
            assert exported.study_uid in stored_studies(node)
            length = int(re.search(rb"Content-Length: (\d+)", head, re.I)[1])  # type: ignore[index]
            left = length - len(head.partition(b"\r\n\r\n")[2])
            while left > 0:  # the rest of the image, to its end
                chunk = reader.recv(min(left, 1 << 16))
                assert chunk, "the export ended early"
                left -= len(chunk)
        finally:
            reader.close()
        poll(lambda: rows(node.data_dir, "SELECT count(*) FROM jobs WHERE kind = 'export'")
             == [(0,)])
        assert store_study(node, third) == [0]
        assert stored_studies(node) == {other.study_uid, third.study_uid}
    finally:
        node.stop()


def send_under_load(node: NodeProcess, studies: int, stop: threading.Event | None = None,
                    also: NodeProcess | None = None, answer_within: float = 30.0) -> list[int]:
    """Four associations at once, each sending its own studies; every status answered.
    `also`: a second node that takes every other association. `answer_within`: seconds a
    sender waits for an answer (pynetdicom's DIMSE timeout) before it gives up on its
    association."""
    ae = AE(ae_title="QUOTA")
    ae.requested_contexts = StoragePresentationContexts[:100]
    ae.dimse_timeout = answer_within
    start = threading.Barrier(4, timeout=10)

    def sender(part: int) -> list[int]:
        start.wait()
        to = also if also is not None and part % 2 else node
        assoc = ae.associate("127.0.0.1", to.dicom_port, ae_title=to.ae_title)
        statuses = []
        try:
            for n in range(studies):
                for i in range(PER_STUDY):
                    if stop is not None and stop.is_set():
                        return statuses
                    answer = assoc.send_c_store(make_instance(spec(100 + part * 50 + n), 0, i))
                    statuses.append(int(answer.Status) if "Status" in answer else -1)
        finally:
            if assoc.is_established:
                assoc.release()
        return statuses

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return [s for part in pool.map(sender, range(4)) for s in part]


def highest_while(work: Callable[[], T], reading: Callable[[], int]) -> tuple[T, int]:
    """What `work` returns, and the highest `reading` seen (every 5 ms) while it ran."""
    highest = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal highest
        while not done.is_set():
            highest = max(highest, reading())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = work()
    finally:
        done.set()
        watcher.join()
    return result, highest


def test_four_associations_at_the_limit_hold_it_within_one_instance(tmp_path: Path) -> None:
    instance = len(make_instance(spec(100), 0, 0).PixelData) + 2048  # above any header
    limit = 30 * instance
    node = quota_node(tmp_path / "node", workers=2, max_bytes=limit).start()
    try:
        statuses, highest = highest_while(lambda: send_under_load(node, studies=4),
                                          lambda: totals(node)[1])
        assert statuses == [0] * 4 * 4 * PER_STUDY
        [(largest,)] = rows(node.data_dir, "SELECT max(size) FROM instances")
        print(f"highest {highest} limit {limit} largest instance {largest}")
        assert highest <= limit + largest, (highest, limit, largest)
        assert totals(node)[1] <= limit
        assert rows(node.data_dir, "SELECT count(*) FROM audit_events WHERE username = "
                    "'recycle'")[0][0] > 0
    finally:
        node.stop()


def test_a_node_killed_while_recycling_loses_nothing_it_still_indexes(tmp_path: Path) -> None:
    instance = len(make_instance(spec(100), 0, 0).PixelData) + 2048
    node = quota_node(tmp_path / "node", workers=2, max_bytes=20 * instance).start()
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # A request in flight when the node dies can go unanswered without the association
        # seeing its connection close (pynetdicom then waits out its DIMSE timeout, 30 s by
        # default): the senders give up after a few seconds instead.
        sending = pool.submit(send_under_load, node, 6, stop, answer_within=5.0)
        poll(lambda: rows(node.data_dir, "SELECT count(*) FROM jobs WHERE kind = 'delete'")
             [0][0] >= 2)
        node.kill()
        stop.set()
        sending.exception()  # the associations broke: whatever they raised
    node.start()
    try:
        poll(lambda: rows(node.data_dir, "SELECT count(*) FROM jobs WHERE kind = 'delete' "
                          "AND state <> 'done'") == [(0,)])
        checked = node.cli("check")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert not [p for p in (node.data_dir / "storage").rglob(".*") if p.is_file()]
    finally:
        node.stop()


async def test_a_post_import_past_the_limit_fails_its_study_with_storage_full(
        tmp_path: Path) -> None:
    manager, api, volume = await start_api(
        tmp_path / "app", storage={"fsync": False, "max_studies": 1, "full_policy": "reject"})
    try:
        await api.ingest(spec(30))  # the one study the limit allows
        write_spec_files(volume)  # the request's study: another one
        context = await opened(api, example("files"))
    finally:
        await manager.__aexit__(None, None, None)
    (study,) = context["studies"]
    assert study["state"] == "failed"
    assert "storage full" in study["message"]
    failures = context["sources"]["import"]["failures"]
    assert failures and {f["message"] for f in failures} == {"storage full"}


def test_a_cli_import_past_the_limit_names_storage_full(tmp_path: Path) -> None:
    node = quota_node(tmp_path / "node", max_studies=1, full_policy="reject")
    node.write_config()
    import_study(node, tmp_path, 20)
    write_study(tmp_path / "21", spec(21))
    result = node.cli("import", str(tmp_path / "21"))
    assert result.returncode == 1
    assert result.stdout.count("storage full") == PER_STUDY, result.stdout
    assert stored_studies(node) == {uid(5520)}


def test_only_the_processes_that_store_share_the_room(tmp_path: Path) -> None:
    """The supervisor preparing two workers announced itself too: for half a minute each worker
    took a third of the room instead of half, and read the totals more often for it."""
    node = quota_node(tmp_path / "node", workers=2, max_bytes=10**9).start()
    try:
        def admitters() -> set[str]:
            return {str(key).rsplit(":", 1)[1] for (key,) in rows(
                node.data_dir, "SELECT key FROM settings WHERE key LIKE 'quota-admitter:%'")}
        poll(lambda: len(admitters()) >= 2)
        assert node.proc is not None
        assert str(node.proc.pid) not in admitters()
        assert len(admitters()) == 2
    finally:
        node.stop()
