"""A full disk answers C-STORE with 0xA700 (Out of Resources), never an A-ABORT: the partial
file goes at once, the association and the node go on serving, and the same instance is
stored once there is room again. The node's data folder is a small tmpfs, filled for real
(tests/small_disk.py).
"""

from __future__ import annotations

import errno
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from node.config import config_from_dict
from node.index.index_writer import AddOutcome, StoredFile
from node.process.runtime import open_services
from node.services import NodeServices
from tests.factory import StudySpec, make_instance, uid
from tests.index_db import on_postgresql, rows
from tests.peers import NodeProcess, dcmtk, incoming_files
from tests.postgres_peer import PostgresCluster
from tests.rest_support import config_dict
from tests.small_disk import fill, tmpfs
from tests.test_index_concurrency import record

DISK = "24m"
OUT_OF_RESOURCES = 0xA700
# 2 MiB of pixel data: the receiver writes it in 1 MiB steps (fastpath/store_receiver.WRITE_BUFFER).
SPEC = StudySpec(study_uid=uid(16010), patient_id="ISSUE16-FULL", rows=1024, columns=1024)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """The node's data folder, on a tmpfs of its own."""
    with tmpfs(tmp_path / "node" / "data", DISK) as folder:
        yield folder


@pytest.fixture
def node_on_small_disk(small_disk: Path, tmp_path: Path) -> Iterator[NodeProcess]:
    node = NodeProcess(tmp_path / "node").start()
    try:
        yield node
    finally:
        node.stop()


def is_indexed(node: NodeProcess, sop_uid: str) -> bool:
    return bool(rows(node.data_dir, "SELECT 1 FROM instances WHERE sop_uid = :sop", sop=sop_uid))


@pytest.mark.parametrize("room", [0, 300_000], ids=["no-room", "room-for-part"])
def test_a_full_disk_answers_out_of_resources_and_stores_again_once_freed(
    node_on_small_disk: NodeProcess, small_disk: Path, room: int
) -> None:
    answers_full_disk(node_on_small_disk, small_disk, room)


def test_a_verbose_node_answers_a_full_disk_too(small_disk: Path, tmp_path: Path) -> None:
    """--verbose runs plain pynetdicom (its message logging reads its own objects): the node's
    store handler then writes the file, and still answers 0xA700 rather than an A-ABORT."""
    node = NodeProcess(tmp_path / "node", verbose=True).start()
    try:
        answers_full_disk(node, small_disk, 0)
    finally:
        node.stop()
    assert "DICOM fast path off (--verbose" in node.log_text()


def answers_full_disk(node: NodeProcess, small_disk: Path, room: int) -> None:
    """A full disk with `room` bytes left: 0xA700, no partial file, the association goes on,
    and the same instance is stored once the disk has room."""
    ds = make_instance(SPEC, 0, room % 7)
    ae = AE(ae_title="FULLDISK")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    filler = fill(small_disk, room)

    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(ds)
        assert status.Status == OUT_OF_RESOURCES, f"0x{status.Status:04X}"
        assert "storage full" in str(status.get("ErrorComment", ""))
        assert assoc.is_established, "the association was aborted"
        assert incoming_files(node.data_dir) == [], "a partial file was left in incoming/"
        assert assoc.send_c_echo().Status == 0x0000

        filler.unlink()
        assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        if assoc.is_established:
            assoc.release()

    assert is_indexed(node, str(ds.SOPInstanceUID))
    assert incoming_files(node.data_dir) == []
    echo = dcmtk("echoscu", "-aec", node.ae_title, "127.0.0.1", str(node.dicom_port))
    assert echo.returncode == 0, echo.stderr
    assert "Bad file descriptor" not in node.log_text()


async def fill_the_index_until_full(services: NodeServices, disk: Path) -> str:
    """Add index records with the index's disk full until the writer refuses one with ENOSPC,
    then free the disk and add one more; the refusal's message."""
    async def add(patient: int) -> AddOutcome:
        rec = record(patient, 0, 0, 0)
        outcome, _ = await services.writer.add(StoredFile(rec, f"{rec.sop_uid}.dcm", 1, "test"))
        return outcome

    assert await add(0) is AddOutcome.ADDED
    filler = fill(disk, 0)
    with pytest.raises(OSError) as full:
        for patient in range(1, 5000):
            await add(patient)
    assert full.value.errno == errno.ENOSPC
    filler.unlink()
    assert await add(5000) is AddOutcome.ADDED
    return str(full.value)


@pytest.mark.skipif(on_postgresql(), reason="the index is on the session's PostgreSQL cluster")
async def test_an_index_database_on_a_full_disk_fails_as_the_disk_does(tmp_path: Path) -> None:
    """SQLite's "database or disk is full" comes out of the index writer as the OSError
    (ENOSPC) a file write gets, which the C-STORE SCP answers with 0xA700 like any full disk;
    once there is room the writer commits again."""
    with tmpfs(tmp_path / "data", "4m") as data:
        async with open_services(config_from_dict(config_dict(), base_dir=tmp_path)) as services:
            # The WAL's room is used up within a few records.
            await fill_the_index_until_full(services, data)


@pytest.mark.skipif(not on_postgresql(), reason="the PostgreSQL index (SQLite's: above)")
async def test_a_postgresql_index_on_a_full_disk_fails_as_the_disk_does(
        tmp_path: Path, postgres: PostgresCluster) -> None:
    """PostgreSQL's "could not extend file" (SQLSTATE 53100) comes out of the index writer as
    ENOSPC too. The database lives in a tablespace on a small file system of its own (its WAL
    stays on the cluster's disk: a full WAL stops the whole server, not one insert)."""
    # In /tmp itself: the DICOM servers of earlier tests point tempfile's default folder at
    # their incoming/, which the postgres user cannot enter.
    folder = Path(tempfile.mkdtemp(prefix="viewnode-tablespace-", dir="/tmp"))
    folder.chmod(0o755)
    name = "full_disk_index"
    with tmpfs(folder / "space", "32m") as space:
        shutil.chown(space, "postgres", "postgres")
        with postgres.connect() as conn:
            conn.execute(f"CREATE TABLESPACE {name} LOCATION '{space}'")
            conn.execute(f"CREATE DATABASE {name} TABLESPACE {name}")
        try:
            config = config_from_dict(config_dict(database={"url": postgres.url(name)}),
                                      base_dir=tmp_path)
            async with open_services(config) as services:
                full = await fill_the_index_until_full(services, space)
                assert "53100" in full
        finally:
            with postgres.connect() as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                conn.execute(f"DROP TABLESPACE IF EXISTS {name}")
    shutil.rmtree(folder)
