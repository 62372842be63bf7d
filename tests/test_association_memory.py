"""A node's memory stays flat over thousands of associations: pynetdicom's full collection every
60 accepts, which the fast path once removed, collects the cycles finished associations leave
(without it a worker grew by ~24 MiB over its first 13,000 associations; node/dimse/fastpath/
association_costs.py).

The peer is a raw socket (associate, release, close), so that the test measures the node and
the node alone: its resident memory after a warm-up, then after as many associations as fit in
BUDGET seconds, up to ASSOCIATIONS.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import fast_path
from tests.peers import NodeProcess
from tests.test_association_requests import associate_rq
from tests.test_dicom_limits import read_pdu

ASSOCIATIONS = 10_000
BUDGET = 25.0  # seconds
# The allocator's and the caches' first growth (~20 MiB over the first few hundred).
WARM_UP = 1000
# Measured: +2.6 MiB from 1,000 to 10,000 associations with the collection, +24 MiB without.
ALLOWED_GROWTH = 6 * 1024 * 1024
A_RELEASE_RQ = struct.pack(">BBLL", 0x05, 0, 4, 0)


@pytest.fixture(scope="module")
def one_process_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = NodeProcess(tmp_path_factory.mktemp("memory") / "node",
                       extra={"node": {"workers": 1}}).start()
    yield node
    node.stop()


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def associate_and_release(port: int, request: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        assert read_pdu(sock)[:1] == b"\x02"  # A-ASSOCIATE-AC
        sock.sendall(A_RELEASE_RQ)
        assert read_pdu(sock)[:1] == b"\x06"  # A-RELEASE-RP


@pytest.mark.dialect_neutral  # the index plays no part: once, on SQLite, is enough
@pytest.mark.skipif(not fast_path.ON, reason="plain pynetdicom's negotiation takes ~0.15 s of "
                    "CPU per association: too few fit in the budget")
def test_memory_stays_flat_over_thousands_of_associations(one_process_node: NodeProcess) -> None:
    node = one_process_node
    assert node.proc is not None
    request = associate_rq()
    for _ in range(WARM_UP):
        associate_and_release(node.dicom_port, request)
    before = resident_bytes(node.proc.pid)
    started = time.monotonic()
    count = 0
    while count < ASSOCIATIONS and time.monotonic() - started < BUDGET:
        associate_and_release(node.dicom_port, request)
        count += 1
    after = resident_bytes(node.proc.pid)
    print(f"{count} associations in {time.monotonic() - started:.1f} s: resident "
          f"{before / 2**20:.1f} -> {after / 2**20:.1f} MiB")
    assert count >= 2_000, f"only {count} associations in {BUDGET} s"
    assert after - before < ALLOWED_GROWTH, (count, before, after)
