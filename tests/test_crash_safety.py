"""SIGKILL in the middle of a transfer loses nothing the node acknowledged, and leaves no debris.

DCMTK's storescu sends a study over one association; its verbose log says which instances got a
Success response. The node is killed without warning while instances are arriving, restarted,
and then every acknowledged instance must be indexed with a complete file, `check` must find the
index and storage consistent, and incoming/ must be empty.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from node.ingest.file_completeness import check_complete
from tests.factory import StudySpec, uid, write_study
from tests.index_db import rows
from tests.peers import PEER_ENV, NodeProcess, incoming_files

INSTANCES = 500


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One study for every kill point: each test has a node of its own."""
    folder = tmp_path_factory.mktemp("crash") / "study"
    write_study(folder, StudySpec(
        study_uid=uid(7100), patient_id="CRASH", series=5,
        instances_per_series=INSTANCES // 5, rows=32, columns=32,
    ))
    return folder


@pytest.fixture
def crash_node(tmp_path: Path) -> Iterator[NodeProcess]:
    node = NodeProcess(tmp_path / "node").start()
    yield node
    node.stop()


def send_and_kill(node: NodeProcess, folder: Path, kill_after: int) -> list[Path]:
    """Send `folder` with storescu, SIGKILL the node after `kill_after` Success responses, and
    return the files that got a Success response (including any that came after the kill)."""
    storescu = subprocess.Popen(
        ["storescu", "-v", "-aec", node.ae_title, "+sd", "+r",
         "127.0.0.1", str(node.dicom_port), str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=PEER_ENV,
    )
    assert storescu.stdout is not None
    acknowledged: list[Path] = []
    sending: Path | None = None
    deadline = time.monotonic() + 60
    try:
        for line in storescu.stdout:
            assert time.monotonic() < deadline, "storescu took too long"
            if line.startswith("I: Sending file: "):
                sending = Path(line.removeprefix("I: Sending file: ").strip())
            elif "Received Store Response (Success)" in line:
                assert sending is not None
                acknowledged.append(sending)
                sending = None
                if len(acknowledged) == kill_after:
                    node.kill()
        storescu.wait(30)
    finally:
        if storescu.poll() is None:
            storescu.kill()
            storescu.wait()
    return acknowledged


def indexed(node: NodeProcess) -> dict[str, tuple[str, int]]:
    return {sop: (path, size)
            for sop, path, size in rows(node.data_dir, "SELECT sop_uid, path, size FROM instances")}


@pytest.mark.parametrize("kill_after", [150, 40])
def test_sigkill_mid_transfer_keeps_every_acknowledged_instance(
    crash_node: NodeProcess, study_folder: Path, kill_after: int
) -> None:
    node, folder = crash_node, study_folder
    acknowledged = send_and_kill(node, folder, kill_after)
    assert not node.is_running()
    assert kill_after <= len(acknowledged) < INSTANCES, "the kill did not land mid-transfer"

    node.start()
    assert incoming_files(node.data_dir) == [], "temporary files left in incoming/ after restart"

    check = node.cli("check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "consistent" in check.stdout

    rows = indexed(node)
    storage = node.data_dir / "storage"
    for source in acknowledged:
        sop_uid = source.stem
        assert sop_uid in rows, f"acknowledged instance {sop_uid} is not indexed"
        relative, size = rows[sop_uid]
        stored = storage / relative
        assert stored.stat().st_size == size
        check_complete(stored)
        ds = dcmread(stored)
        assert ds.SOPInstanceUID == sop_uid
        assert ds.PixelData == dcmread(source).PixelData

    # The restarted node serves, and takes the instances that were in flight at the kill.
    unacknowledged = sorted(set(folder.iterdir()) - {folder / p.name for p in acknowledged})[:5]
    retry = subprocess.run(
        ["storescu", "-aec", node.ae_title, "127.0.0.1", str(node.dicom_port),
         *map(str, unacknowledged)],
        env=PEER_ENV, capture_output=True, text=True, timeout=60,
    )
    assert retry.returncode == 0, retry.stderr
    assert {p.stem for p in unacknowledged} <= set(indexed(node))
