"""The PDU limits of the README, held by a serving node with or without its fast path: a
P-DATA-TF PDU longer than the Maximum Length the node announced, any other PDU over 4 MiB, or a
command fragment inside a data set aborts that association (A-ABORT, one log line) before
anything is allocated for it, and the node goes on serving. The peer here is a raw socket, so
that it can break the protocol as no library would.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from tests.factory import StudySpec, make_instance, uid
from tests.peers import NodeProcess, dcmtk, incoming_files
from tests.test_store_receive import data_set_bytes, p_data_tf, pdv, store_command

WITHIN = 10.0  # seconds: far less than any timeout of the node's
CONTEXT_ID = 1


@pytest.fixture(scope="module")
def limits_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("limits") / "node").start()
    yield process
    process.stop()


def _item(kind: int, value: bytes) -> bytes:
    return struct.pack(">BxH", kind, len(value)) + value


def associate_rq_for_ct() -> bytes:
    """An A-ASSOCIATE-RQ proposing CT Image Storage in Explicit VR Little Endian (context 1)."""
    items = (_item(0x10, b"1.2.840.10008.3.1.1.1")
             + _item(0x20, bytes([CONTEXT_ID, 0, 0, 0]) + _item(0x30, CTImageStorage.encode())
                     + _item(0x40, ExplicitVRLittleEndian.encode()))
             + _item(0x50, _item(0x51, struct.pack(">I", 16384))
                     + _item(0x52, b"1.2.826.0.1.3680043.9.7433")))
    body = (struct.pack(">HH", 1, 0) + b"VIEWNODE".ljust(16) + b"LIMITS".ljust(16) + bytes(32)
            + items)
    return struct.pack(">BxI", 0x01, len(body)) + body


def read_pdu(sock: socket.socket) -> bytes:
    """One whole PDU from `sock` (b"" when it closed first)."""
    data = b""
    sock.settimeout(WITHIN)
    while len(data) < 6 or len(data) < 6 + struct.unpack(">I", data[2:6])[0]:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    return data


@contextmanager
def associated(node: NodeProcess) -> Iterator[socket.socket]:
    """A raw socket on which the node has accepted CT Image Storage (context 1)."""
    with socket.create_connection(("127.0.0.1", node.dicom_port), timeout=WITHIN) as sock:
        sock.sendall(associate_rq_for_ct())
        answer = read_pdu(sock)
        assert answer[:1] == b"\x02", answer[:16]  # A-ASSOCIATE-AC
        yield sock


def huge_pdu(pdu_type: int) -> bytes:
    """The header of a 2 GiB PDU and a few bytes of it."""
    return struct.pack(">BBL", pdu_type, 0, 0x7FFFFFFF) + b"\x00" * 64


def assert_aborted(sock: socket.socket) -> None:
    """The node answers with an A-ABORT (the peer then closes, PS3.8 9.1.4)."""
    try:
        answer = read_pdu(sock)
    except ConnectionResetError:
        answer = b""
    assert answer[:1] == b"\x07", answer[:16]


def still_serves(node: NodeProcess) -> None:
    echo = dcmtk("echoscu", "-aec", node.ae_title, "127.0.0.1", str(node.dicom_port))
    assert echo.returncode == 0, echo.stderr


@pytest.mark.parametrize("pdu_type", [0x04, 0x05], ids=["P-DATA-TF", "A-RELEASE-RQ"])
def test_a_pdu_longer_than_accepted_aborts_the_association(
        limits_node: NodeProcess, pdu_type: int) -> None:
    offset = len(limits_node.log_text())
    with associated(limits_node) as sock:
        sock.sendall(huge_pdu(pdu_type))
        assert_aborted(sock)
    still_serves(limits_node)
    logged = limits_node.log_text()[offset:]
    assert "longer than the" in logged and "Traceback" not in logged, logged


def test_a_command_fragment_inside_a_data_set_aborts_the_association(
        limits_node: NodeProcess) -> None:
    ds = make_instance(StudySpec(study_uid=uid(18018), rows=8, columns=8), 0, 0)
    offset = len(limits_node.log_text())
    with associated(limits_node) as sock:
        sock.sendall(p_data_tf(pdv(CONTEXT_ID, 0x03, store_command(ds, 1)),
                               pdv(CONTEXT_ID, 0x00, data_set_bytes(ds)[:100])))
        sock.sendall(p_data_tf(pdv(CONTEXT_ID, 0x03, store_command(ds, 2))))
        assert_aborted(sock)
    still_serves(limits_node)
    logged = limits_node.log_text()[offset:]
    assert "command fragment inside a" in logged, logged
    deadline = time.monotonic() + WITHIN
    while incoming_files(limits_node.data_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert incoming_files(limits_node.data_dir) == []


def test_a_whole_store_on_the_same_raw_association_is_answered(limits_node: NodeProcess) -> None:
    """The raw peer itself is right: a well-formed C-STORE over it is answered 0x0000."""
    ds = make_instance(StudySpec(study_uid=uid(18019), rows=8, columns=8), 0, 0)
    with associated(limits_node) as sock:
        sock.sendall(p_data_tf(pdv(CONTEXT_ID, 0x03, store_command(ds, 1)),
                               pdv(CONTEXT_ID, 0x02, data_set_bytes(ds))))
        response = read_pdu(sock)
        assert response[:1] == b"\x04", response[:16]
        # Status (0000,0900) in the command set: group, element, length 2, value 0x0000.
        assert b"\x00\x00\x00\x09\x02\x00\x00\x00\x00\x00" in response
