"""`serve` with several worker processes: one node to its peers, spread over the cores.

The node runs as `python -m node serve` with `[node] workers = 2`; DCMTK and pynetdicom talk to
its one DICOM port, an HTTP client to its one HTTP port. Which worker serves a connection is
read from /proc (the process holding the accepted socket).
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification

from node.index.write_lock import WriteLock
from tests.factory import StudySpec, uid, write_study
from tests.index_db import rows
from tests.peers import PEER_ENV, NodeProcess, alive, wait_for_port

WORKERS = 2


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def workers_of(node: NodeProcess, count: int = WORKERS, timeout: float = 30.0) -> list[int]:
    """The worker pids, once `count` of them are running."""
    assert node.proc is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = children(node.proc.pid)
        if len(found) == count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"expected {count} workers, found {children(node.proc.pid)}")


def wait_ready(node: NodeProcess, timeout: float = 30.0) -> None:
    """Until every worker has said it is ready (after its own start-up, not just forked)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = node.log_text()
        if all(f"worker {i} of {WORKERS}" in text for i in range(1, WORKERS + 1)):
            return
        time.sleep(0.05)
    raise AssertionError("the workers did not all get ready")


def _thread_cpu(pids: list[int]) -> dict[str, int]:
    """CPU time so far of every thread of `pids`, in nanoseconds (/proc schedstat)."""
    used = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                used[task.name] = int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue  # the thread ended meanwhile
    return used


def workers_idle(node: NodeProcess, window: float = 0.1, timeout: float = 30.0) -> None:
    """Until the workers have used under a tenth of a core over `window` (longer than their
    REFRESH_SECONDS) with no thread starting or ending. A busier worker leaves a new
    connection to the other only for ASSOCIATION_YIELD_SECONDS (node/process/connection_load.py): a
    worker still finishing the last association's work, or an association thread not yet
    ended, can keep the other from taking the next one in time on a loaded machine."""
    pids = workers_of(node)
    deadline = time.monotonic() + timeout
    before = _thread_cpu(pids)
    while True:
        time.sleep(window)
        after = _thread_cpu(pids)
        if after.keys() == before.keys() and \
                sum(after.values()) - sum(before.values()) < window * 1e8:
            return
        assert time.monotonic() < deadline, "the workers did not go idle"
        before = after


def socket_owner(local_port: int, remote_port: int, pids: list[int]) -> int | None:
    """Which of `pids` holds the TCP socket local_port <-> remote_port (an accepted one)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == local_port and int(remote.split(":")[1], 16) == \
                remote_port:
            inodes.add(fields[9])
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return pid
    return None


def client_port(assoc: Association) -> int:
    """The requestor's ephemeral port of an established association."""
    sock = assoc.dul.socket
    assert sock is not None and sock.socket is not None
    return int(sock.socket.getsockname()[1])


def waits_for_lock(database: str) -> bool:
    """Whether a writer is blocked on the writers' lock of `database` (node/index/write_lock.py):
    /proc/locks lists a blocked flock with "->"."""
    found = os.stat(f"{database}-writer.lock")
    file_id = f"{os.major(found.st_dev):02x}:{os.minor(found.st_dev):02x}:{found.st_ino}"
    return any(fields[1:3] == ["->", "FLOCK"] and fields[6] == file_id
               for fields in (line.split() for line in Path("/proc/locks").read_text()
                              .splitlines()))


def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("workers") / "node",
                          extra={"node": {"workers": WORKERS}}).start()
    wait_ready(process)
    yield process
    process.stop()


def test_the_node_runs_the_configured_number_of_workers_each_with_its_incoming_folder(
        node: NodeProcess) -> None:
    pids = workers_of(node)
    assert len(set(pids)) == WORKERS
    for index in range(1, WORKERS + 1):
        assert (node.data_dir / "incoming" / f"worker-{index}").is_dir()


def test_two_open_associations_are_served_by_two_different_workers(node: NodeProcess) -> None:
    ae = AE(ae_title="BALANCE")
    ae.add_requested_context(Verification)
    first = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)
    try:
        assert first.is_established
        workers_idle(node)  # done with the first association, so the other accepts in time
        second = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)
        try:
            assert second.is_established
            pids = workers_of(node)
            owners = {socket_owner(node.dicom_port, client_port(assoc), pids)
                      for assoc in (first, second)}
            assert None not in owners
            assert len(owners) == 2, "both associations went to one worker"
            assert second.send_c_echo().Status == 0x0000
        finally:
            second.release()
    finally:
        first.release()


def test_four_associations_opened_at_once_are_shared_two_and_two(node: NodeProcess) -> None:
    """As four storescu processes started together open them (bench.ingest over four
    associations): each worker takes two. A worker counts the connections it accepted whose
    association has not started yet; without that it took three of four (CI, 4 December)."""
    ae = AE(ae_title="BALANCE")
    ae.add_requested_context(Verification)
    start = threading.Barrier(4, timeout=10)

    def associate() -> Association:
        start.wait()
        return ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)

    workers_idle(node)  # earlier associations ended, and the workers published that
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        associations = list(pool.map(lambda _: associate(), range(4)))
    try:
        assert all(assoc.is_established for assoc in associations)
        pids = workers_of(node)
        owners = [socket_owner(node.dicom_port, client_port(assoc), pids)
                  for assoc in associations]
        assert sorted(owners.count(pid) for pid in pids) == [2, 2], owners
    finally:
        for assoc in associations:
            assoc.release()


def test_keep_alive_http_connections_are_shared_between_the_workers(node: NodeProcess) -> None:
    import socket

    clients = []
    try:
        for _ in range(4):
            client = socket.create_connection(("127.0.0.1", node.http_port), timeout=10)
            client.sendall(b"GET /ngv?q=0 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.recv(100).startswith(b"HTTP/1.1 ")  # served, and kept open
            clients.append(client)
            workers_idle(node)
        pids = workers_of(node)
        owners = [socket_owner(node.http_port, c.getsockname()[1], pids) for c in clients]
        assert sorted(owners.count(pid) for pid in pids) == [2, 2], owners
    finally:
        for client in clients:
            client.close()


def test_four_storescu_associations_at_once_store_and_index_every_instance(
        node: NodeProcess, tmp_path: Path) -> None:
    parts = []
    for part in range(4):
        folder = tmp_path / f"part{part}"
        write_study(folder, StudySpec(study_uid=uid(8800 + part), patient_id=f"WORKERS{part}",
                                      series=2, instances_per_series=15, rows=16, columns=16))
        parts.append(folder)
    senders = [subprocess.Popen(["storescu", "-aec", node.ae_title, "+sd", "+r", "127.0.0.1",
                                 str(node.dicom_port), str(folder)],
                                env=PEER_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
               for folder in parts]
    for sender in senders:
        _out, err = sender.communicate(timeout=120)
        assert sender.returncode == 0, err
    study_uids = [uid(8800 + part) for part in range(4)]
    counts = rows(node.data_dir, "SELECT s.study_uid, count(*) FROM instances i "
                        "JOIN series se ON i.series_pk = se.id JOIN studies s ON se.study_pk = "
                        "s.id GROUP BY s.study_uid")
    found = {study: count for study, count in counts}
    assert [found.get(study) for study in study_uids] == [30, 30, 30, 30]
    check = node.cli("check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "consistent" in check.stdout


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str],
                                                                      str]:
    """One request on a connection of its own; redirects are not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers={**(headers or {}), "Connection": "close"})
    try:
        with opener.open(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def test_a_token_issued_by_one_worker_is_redeemed_by_another(node: NodeProcess) -> None:
    role = node.cli("role", "add", "workers-physician")
    assert role.returncode == 0, role.stderr
    tokens = []
    for n in range(12):  # one connection each: SO_REUSEPORT spreads them over the workers
        query = urllib.parse.urlencode({"username": f"u{n}", "role": "workers-physician",
                                        "studyUID": uid(8800)})
        status, _headers, body = http_get(f"{node.http_url}/ngv/obscurl?{query}",
                                         {"Authorization": node.api_key})
        assert status == 200, body
        tokens.append(body)
    for token in tokens:
        status, _headers, body = http_get(f"{node.http_url}/ngv?q={token}")
        assert status in (302, 303), body
    status, _headers, _body = http_get(f"{node.http_url}/ngv?q={tokens[0]}")
    assert status == 403


def test_a_killed_worker_is_replaced_and_the_node_keeps_serving(node: NodeProcess) -> None:
    before = workers_of(node)
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = children(node.proc.pid) if node.proc else []
        if len(now) == WORKERS and before[0] not in now:
            break
        time.sleep(0.1)
    after = workers_of(node)
    assert before[0] not in after and before[1] in after
    assert "exited with status -9; starting a new one" in node.log_text()
    for _ in range(4):
        echo = subprocess.run(["echoscu", "-aec", node.ae_title, "127.0.0.1",
                               str(node.dicom_port)], env=PEER_ENV, capture_output=True,
                              text=True, timeout=30)
        assert echo.returncode == 0, echo.stderr


@pytest.mark.dialect_neutral  # processes only: nothing asks the index anything
def test_killing_the_supervisor_kills_every_worker(tmp_path: Path) -> None:
    process = NodeProcess(tmp_path / "node", extra={"node": {"workers": WORKERS}}).start()
    pids = workers_of(process)
    process.kill()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids)


def test_sigterm_stops_the_workers_and_the_supervisor_cleanly(tmp_path: Path) -> None:
    process = NodeProcess(tmp_path / "node", extra={"node": {"workers": WORKERS}}).start()
    pids = workers_of(process)
    assert process.proc is not None
    proc = process.proc
    process.stop()
    assert proc.returncode == 0
    assert not any(alive(pid) for pid in pids)
    log = process.log_text()
    assert "Traceback" not in log and "failed" not in log, log[-2000:]


def test_a_file_a_crashed_worker_left_in_its_incoming_folder_is_cleared_at_start(
        tmp_path: Path) -> None:
    process = NodeProcess(tmp_path / "node", extra={"node": {"workers": WORKERS}})
    leftover = process.data_dir / "incoming" / "worker-2" / "tmp-half.dcm"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"\0" * 128 + b"DICM")  # half a file: no index row names it
    process.start()
    try:
        wait_ready(process)
        assert not leftover.exists()
        wait_for_port(process.dicom_port)
    finally:
        process.stop()


@pytest.mark.dialect_neutral  # an SQLite file of its own
def test_one_write_lock_holder_keeps_another_out_until_it_commits(tmp_path: Path) -> None:
    import sqlite3

    database = str(tmp_path / "index.sqlite")
    first, second = WriteLock(database), WriteLock(database)
    a = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    b = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    a.execute("CREATE TABLE t (n INTEGER)")
    order: list[str] = []
    inside = threading.Event()

    def other() -> None:
        inside.wait()
        with second.transaction(b):
            order.append("second")
            b.execute("INSERT INTO t VALUES (2)")

    thread = threading.Thread(target=other)
    thread.start()
    with first.transaction(a):
        inside.set()
        until(lambda: bool(order) or waits_for_lock(database), "the other writer to wait")
        order.append("first")
        a.execute("INSERT INTO t VALUES (1)")
    thread.join(5)
    assert order == ["first", "second"]
    assert [n for (n,) in a.execute("SELECT n FROM t ORDER BY rowid")] == [1, 2]
    first.close()
    second.close()


@pytest.mark.dialect_neutral  # an SQLite file of its own
def test_a_transaction_inside_held_keeps_the_lock_until_held_ends(tmp_path: Path) -> None:
    """The index writer gathers its batch under `held()` and commits it with `transaction()`
    (and may retry record by record): the lock must stay its own throughout."""
    import sqlite3

    database = str(tmp_path / "index.sqlite")
    mine, other = WriteLock(database), WriteLock(database)
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("CREATE TABLE t (n INTEGER)")
    got_it = threading.Event()

    def take() -> None:
        with other.held():
            got_it.set()

    with mine.held():
        with mine.transaction(connection):
            connection.execute("INSERT INTO t VALUES (1)")
        thread = threading.Thread(target=take)
        thread.start()
        until(lambda: got_it.is_set() or waits_for_lock(database), "the other to take the lock")
        assert not got_it.is_set(), "the lock was let go when the inner transaction ended"
    assert got_it.wait(5)
    thread.join(5)
    mine.close()
    other.close()


@pytest.mark.parametrize("workers", [1, WORKERS])
def test_a_port_another_program_holds_stops_the_node_with_a_clear_error(
        tmp_path: Path, workers: int) -> None:
    import socket
    import sys

    holder = socket.create_server(("127.0.0.1", 0))
    try:
        process = NodeProcess(tmp_path / "node", dicom_port=holder.getsockname()[1],
                              extra={"node": {"workers": workers}})
        process.write_config()
        result = subprocess.run([sys.executable, "-m", "node", "serve", "--config",
                                 str(process.config_path)], capture_output=True, text=True,
                                timeout=120, env=PEER_ENV)
        assert result.returncode == 1
        assert f"cannot listen on 127.0.0.1:{process.dicom_port}" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        holder.close()
