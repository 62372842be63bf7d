"""C-STORE requests read from their PDUs into a file (node/dimse/fastpath/store_receiver.py),
against pynetdicom's own requestor and against PDUs written by hand on an established association:
the file holds exactly what pynetdicom's chunked receive would write, a PDU that ends one
message and begins the next is shared correctly, an association aborted inside a data set
leaves no file, and with PDU handlers bound pynetdicom reads the request itself.
"""

from __future__ import annotations

import errno
import os
import struct
import time
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import CTImageStorage, Verification
from pynetdicom.transport import ThreadedAssociationServer

from node.config import Config
from node.dimse.fastpath import store_receiver
from node.dimse.fastpath.file_meta import file_meta_bytes
from node.dimse.server import build_ae
from node.dimse.store_scp import received_head, received_write_error
from node.ingest.header_scan import HEAD_BYTES
from tests.factory import StudySpec, make_instance, uid
from tests.fast_path import receive_in, require_fast_path
from tests.small_disk import fill, tmpfs

MAX_PDU = 16384


class Received:
    """What the SCP's store handler saw: each file's bytes, and who read the request."""

    def __init__(self) -> None:
        self.files: list[bytes] = []
        self.read_here: list[bool] = []
        self.heads: list[bytes | None] = []
        self.write_errors: list[int | None] = []

    def on_store(self, event: evt.Event) -> int:
        error = received_write_error(event.request)
        if error is not None:  # the receiver deleted the file it could not write
            self.write_errors.append(error.errno)
            return 0xA700
        self.files.append(Path(event.dataset_path).read_bytes())
        self.heads.append(received_head(event.request))
        self.read_here.append(received_head(event.request) is not None)
        return 0x0000  # the file is left where it is: pynetdicom deletes it after this


@pytest.fixture
def received() -> Received:
    return Received()


def start_scp(received: Received, *extra: Any) -> ThreadedAssociationServer:
    require_fast_path()
    ae = build_ae(Config())
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
        (evt.EVT_C_STORE, received.on_store), (evt.EVT_C_ECHO, lambda event: 0x0000), *extra])
    assert server is not None
    return server


@pytest.fixture
def scp(received: Received, incoming: Path) -> Iterator[ThreadedAssociationServer]:
    server = start_scp(received)
    yield server
    server.shutdown()


def requester() -> AE:
    ae = AE(ae_title="RECEIVETEST")
    ae.dimse_timeout = 5
    ae.maximum_pdu_size = MAX_PDU
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    return ae


def instance(index: int, size: int) -> Dataset:
    spec = StudySpec(study_uid=uid(7901, index), rows=size, columns=size, modality="CT")
    return make_instance(spec, 0, index)


def data_set_bytes(ds: Dataset) -> bytes:
    """As pynetdicom sends it: Explicit VR Little Endian, as the context agreed."""
    encoded = encode(ds, False, True)
    assert encoded is not None
    return bytes(encoded)


def expected_file(ds: Dataset) -> bytes:
    return (b"\x00" * 128 + b"DICM"
            + file_meta_bytes(ds.SOPClassUID, ds.SOPInstanceUID, ExplicitVRLittleEndian)
            + data_set_bytes(ds))


def test_stores_of_one_and_of_many_pdus_are_read_here_byte_for_byte(
        scp: ThreadedAssociationServer, received: Received, incoming: Path) -> None:
    sent = [instance(1, 8), instance(2, 256), instance(3, 16)]  # the 256x256 spans 8 PDUs
    assoc = requester().associate("127.0.0.1", scp.server_address[1])
    assert assoc.is_established
    statuses = [assoc.send_c_store(ds).Status for ds in sent]
    assoc.release()
    assert statuses == [0x0000] * 3
    assert received.read_here == [True] * 3
    assert received.files == [expected_file(ds) for ds in sent]
    # what the header scan gets instead of reading the file back
    assert received.heads == [file[:HEAD_BYTES] for file in received.files]
    assert len(received.files[1]) > HEAD_BYTES
    assert list(incoming.iterdir()) == []  # a file the handler did not take is deleted


def test_with_pdu_handlers_bound_pynetdicom_reads_the_store(
        received: Received, incoming: Path) -> None:
    pdus: list[Any] = []
    server = start_scp(received, (evt.EVT_PDU_RECV, lambda event: pdus.append(event.pdu)))
    try:
        ds = instance(4, 8)
        assoc = requester().associate("127.0.0.1", server.server_address[1])
        assert assoc.send_c_store(ds).Status == 0x0000
        assoc.release()
    finally:
        server.shutdown()
    assert received.read_here == [False]
    assert received.files == [expected_file(ds)]
    assert received.heads == [None]
    assert pdus


# --- PDUs written by hand on an association pynetdicom established ----------------------------

def pdv(context_id: int, control: int, data: bytes) -> bytes:
    return struct.pack(">LBB", len(data) + 2, context_id, control) + data


def p_data_tf(*pdvs: bytes) -> bytes:
    body = b"".join(pdvs)
    return struct.pack(">BBL", 0x04, 0x00, len(body)) + body


def command_bytes(primitive: Any, message: Any) -> bytes:
    message.primitive_to_message(primitive)
    return bytes(encode(message.command_set, True, True))


def store_command(ds: Dataset, message_id: int) -> bytes:
    primitive = C_STORE()
    primitive.MessageID = message_id
    primitive.AffectedSOPClassUID = ds.SOPClassUID
    primitive.AffectedSOPInstanceUID = ds.SOPInstanceUID
    primitive.Priority = 2
    primitive.DataSet = BytesIO(b"\x00")  # any: it says a data set follows
    return command_bytes(primitive, C_STORE_RQ())


def echo_command(message_id: int) -> bytes:
    primitive = C_ECHO()
    primitive.MessageID = message_id
    primitive.AffectedSOPClassUID = Verification
    return command_bytes(primitive, C_ECHO_RQ())


def eventually(condition: Callable[[], object], timeout: float = 5.0) -> bool:
    """Whether `condition` holds within `timeout` seconds (the SCP works in its own threads)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class RawAssociation:
    """An association whose loop is paused, so that the test writes PDUs to its socket and
    takes the responses from its DIMSE queue itself, as pynetdicom's send_* methods do."""

    def __init__(self, port: int) -> None:
        self.assoc = requester().associate("127.0.0.1", port)
        assert self.assoc.is_established
        self.assoc._reactor_checkpoint.clear()
        while not self.assoc._is_paused:
            time.sleep(0.001)

    def context(self, sop_class: str) -> int:
        return next(int(cx.context_id) for cx in self.assoc.accepted_contexts
                    if cx.abstract_syntax == sop_class)

    def write(self, data: bytes) -> None:
        self.assoc.dul.socket.socket.sendall(data)

    def responses(self, count: int) -> list[tuple[type, int]]:
        found = []
        for _ in range(count):
            _cx, message = self.assoc.dimse.get_msg(block=True)
            assert message is not None, "no response within the DIMSE timeout"
            found.append((type(message), int(message.Status)))
        return found

    def end(self, abort: bool = False) -> None:
        self.assoc._reactor_checkpoint.set()
        if abort:
            self.assoc.abort()
        else:
            self.assoc.release()


def test_a_pdu_that_ends_a_store_and_begins_an_echo_serves_both(
        scp: ThreadedAssociationServer, received: Received, incoming: Path) -> None:
    ds = instance(5, 8)
    data = data_set_bytes(ds)
    raw = RawAssociation(scp.server_address[1])
    ct, echo = raw.context(CTImageStorage), raw.context(Verification)
    raw.write(p_data_tf(pdv(ct, 0x03, store_command(ds, 1))))
    raw.write(p_data_tf(pdv(ct, 0x00, data[:100])))
    raw.write(p_data_tf(pdv(ct, 0x02, data[100:]), pdv(echo, 0x03, echo_command(2))))
    responses = raw.responses(2)
    raw.end()
    assert responses == [(C_STORE, 0x0000), (C_ECHO, 0x0000)]
    assert received.files == [expected_file(ds)]
    assert received.read_here == [True]
    assert list(incoming.iterdir()) == []


def test_an_association_aborted_inside_a_data_set_leaves_no_file(
        scp: ThreadedAssociationServer, received: Received, incoming: Path) -> None:
    ds = instance(6, 64)
    raw = RawAssociation(scp.server_address[1])
    ct = raw.context(CTImageStorage)
    raw.write(p_data_tf(pdv(ct, 0x03, store_command(ds, 1)),
                        pdv(ct, 0x00, data_set_bytes(ds)[:1000])))
    assert eventually(lambda: list(incoming.iterdir()))
    assert len(list(incoming.iterdir())) == 1  # the data set was being written
    raw.end(abort=True)
    assert eventually(lambda: not list(incoming.iterdir()))
    assert received.files == []


def test_a_command_fragment_inside_a_data_set_aborts_the_association(
        scp: ThreadedAssociationServer, received: Received, incoming: Path) -> None:
    ds = instance(7, 8)
    raw = RawAssociation(scp.server_address[1])
    ct = raw.context(CTImageStorage)
    raw.write(p_data_tf(pdv(ct, 0x03, store_command(ds, 1)), pdv(ct, 0x00, b"\x08\x00")))
    raw.write(p_data_tf(pdv(ct, 0x03, echo_command(2))))
    raw.assoc._reactor_checkpoint.set()  # the loop takes the A-ABORT
    assert eventually(lambda: raw.assoc.is_aborted)
    assert eventually(lambda: not list(incoming.iterdir()))
    assert received.files == []


def test_short_writes_of_the_incoming_file_are_continued(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = [b"preamble" * 20, memoryview(b"x" * 1000)[3:900], b"", b"tail"]
    real_writev = os.writev

    def writev_at_most_seven(fd: int, buffers: Any) -> int:  # as a full disk or signal might
        return real_writev(fd, [b"".join(bytes(b) for b in buffers)[:7]])

    monkeypatch.setattr(os, "writev", writev_at_most_seven)
    path = tmp_path / "received.dcm"
    file = store_receiver._IncomingFile(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for part in parts:
        file.write(part)
    file.close()
    assert path.read_bytes() == b"".join(bytes(p) for p in parts)


@pytest.mark.parametrize("pdu_type", [0x04, 0x05])
def test_a_pdu_longer_than_announced_aborts_the_association_before_it_is_read(
        scp: ThreadedAssociationServer, received: Received, incoming: Path,
        pdu_type: int) -> None:
    """A peer announcing a 2 GiB PDU (P-DATA-TF above the node's Maximum Length, or an
    A-RELEASE-RQ above any control PDU's size) is refused: nothing is allocated for it, and the
    SCP goes on serving."""
    raw = RawAssociation(scp.server_address[1])
    raw.write(struct.pack(">BBL", pdu_type, 0, 0x7FFFFFFF) + b"\x00" * 64)
    raw.assoc._reactor_checkpoint.set()  # the loop takes the A-ABORT
    assert eventually(lambda: raw.assoc.is_aborted)
    ds = instance(8, 8)
    assoc = requester().associate("127.0.0.1", scp.server_address[1])
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    assert received.files == [expected_file(ds)]


def test_a_data_set_that_cannot_be_written_reaches_the_handler_as_an_error(
        received: Received, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk: the file is deleted as soon as a write fails, the rest of the data set is
    read, and the request goes to the handler (pynetdicom's way here) with the error instead of
    an A-ABORT; once there is room the association stores again."""
    with tmpfs(tmp_path / "small", "1m") as folder:
        receive_in(monkeypatch, folder)
        server = start_scp(received)
        try:
            ds = instance(9, 256)  # 128 KiB: more than the room left
            filler = fill(folder, 64 * 1024)
            assoc = requester().associate("127.0.0.1", server.server_address[1])
            status = assoc.send_c_store(ds)
            assert status.Status == 0xA700, f"0x{status.Status:04X}"
            assert assoc.is_established
            assert [p.name for p in folder.iterdir()] == ["filler"]
            filler.unlink()
            assert assoc.send_c_store(ds).Status == 0x0000
            assoc.release()
        finally:
            server.shutdown()
    assert received.write_errors == [errno.ENOSPC]
    assert received.files == [expected_file(ds)]
