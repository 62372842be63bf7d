"""C-STORE requests answered by the DUL thread that read them (node/dimse/fastpath/store_answer.py),
against pynetdicom's own requestor: the registered direct form gets the file, the sender and the
file's first bytes, its status and comment reach the requestor in the very bytes pynetdicom's
storage service class would have sent, and with handlers for sent messages bound, pynetdicom
serves the request with the event handler as before.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import CTImageStorage
from pynetdicom.transport import ThreadedAssociationServer

from node.config import Config
from node.dimse import store_scp
from node.dimse.fastpath import store_receiver
from node.dimse.fastpath.file_meta import file_meta_bytes
from node.dimse.fastpath.message_bytes import error_comment
from node.dimse.server import build_ae
from node.dimse.store_scp import ReceivedStore
from node.ingest.header_scan import HEAD_BYTES
from tests.factory import StudySpec, make_instance, uid
from tests.fast_path import require_fast_path

Answer = tuple[int, str | None]


class StoreHandler:
    """An EVT_C_STORE handler in both forms, answering from a list: what each form saw."""

    def __init__(self, answers: list[Answer]) -> None:
        self.answers = answers
        self.direct: list[tuple[ReceivedStore, bytes, str]] = []
        self.events: list[bytes] = []

        # A function of its own per handler: the direct forms are registered by handler.
        def on_store(event: evt.Event, tag: str) -> Dataset:
            self.events.append(Path(event.dataset_path).read_bytes())
            status, comment = self._next()
            answer = Dataset()
            answer.Status = status
            if comment is not None:
                answer.ErrorComment = error_comment(comment)
            return answer

        self.on_store: Callable[..., Dataset] = on_store

    def _next(self) -> Answer:
        return self.answers[(len(self.direct) + len(self.events) - 1) % len(self.answers)]

    def on_store_direct(self, request: ReceivedStore, tag: str) -> Answer:
        self.direct.append((request, request.path.read_bytes(), tag))
        request.path.unlink()  # the direct form consumes the file
        return self._next()


def start_scp(handler: StoreHandler, *extra: Any, direct: bool = True
              ) -> ThreadedAssociationServer:
    require_fast_path()
    if direct:
        store_scp.DIRECT_FORMS[handler.on_store] = handler.on_store_direct
    server = build_ae(Config()).start_server(("127.0.0.1", 0), block=False, evt_handlers=[
        (evt.EVT_C_STORE, handler.on_store, ["tag"]), *extra])
    assert server is not None
    return server


def requester() -> AE:
    ae = AE(ae_title="DIRECTTEST")
    ae.dimse_timeout = 5
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    return ae


def instance(index: int) -> Dataset:
    return make_instance(StudySpec(study_uid=uid(7951, index), rows=8, columns=8,
                                   modality="CT"), 0, index)


def expected_file(ds: Dataset) -> bytes:
    encoded = encode(ds, False, True)
    assert encoded is not None
    return (b"\x00" * 128 + b"DICM"
            + file_meta_bytes(ds.SOPClassUID, ds.SOPInstanceUID, ExplicitVRLittleEndian)
            + bytes(encoded))


def store_all(server: ThreadedAssociationServer, sent: list[Dataset], **kwargs: Any
              ) -> tuple[list[Dataset], list[bytes]]:
    """Each instance's response, and the bytes of every P-DATA-TF PDU the requestor got."""
    received: list[bytes] = []
    assoc = requester().associate(
        "127.0.0.1", server.server_address[1],
        evt_handlers=[(evt.EVT_DATA_RECV, lambda event: received.append(bytes(event.data)))])
    assert assoc.is_established
    responses = [assoc.send_c_store(ds, **kwargs) for ds in sent]
    assoc.release()
    return responses, [pdu for pdu in received if pdu[:1] == b"\x04"]


ANSWERS: list[Answer] = [
    (0x0000, None),
    (0xB000, "duplicate SOP Instance UID: stored one kept"),
    (0xA900, "an element that is not right"),
]


def test_the_direct_form_gets_the_file_and_answers_each_request(incoming: Path) -> None:
    handler = StoreHandler(ANSWERS)
    server = start_scp(handler)
    sent = [instance(1), instance(2), instance(3)]
    try:
        responses, _ = store_all(server, sent)
    finally:
        server.shutdown()
    assert handler.events == []
    assert [file for _, file, _ in handler.direct] == [expected_file(ds) for ds in sent]
    for request, file, tag in handler.direct:
        assert (request.sender, request.move_originator, tag) == ("DIRECTTEST", None, "tag")
        assert request.head == file[:HEAD_BYTES]
        assert request.size == len(file)
    assert [(rsp.Status, rsp.get("ErrorComment")) for rsp in responses] == ANSWERS
    assert list(incoming.iterdir()) == []


def test_direct_responses_are_the_bytes_pynetdicom_sends(incoming: Path) -> None:
    sent = [instance(4), instance(5), instance(6)]
    pdus = []
    for direct in (True, False):
        handler = StoreHandler(ANSWERS)
        server = start_scp(handler, direct=direct)
        try:
            pdus.append(store_all(server, sent)[1])
        finally:
            server.shutdown()
        assert len(handler.direct if direct else handler.events) == 3
    assert len(pdus[0]) == 3
    assert pdus[0] == pdus[1]


def test_an_error_comment_is_cut_to_one_ascii_value(incoming: Path) -> None:
    comment = "refused: Pátient\\Name " + "x" * 80
    handler = StoreHandler([(0xA900, comment)])
    server = start_scp(handler)
    try:
        responses, _ = store_all(server, [instance(7)])
    finally:
        server.shutdown()
    assert responses[0].ErrorComment == "refused: P?tient/Name " + "x" * 42
    assert len(handler.direct) == 1


def test_a_move_sub_operation_names_its_originator(incoming: Path) -> None:
    handler = StoreHandler(ANSWERS[:1])
    server = start_scp(handler)
    try:
        store_all(server, [instance(8)], originator_aet="VIEWNODE", originator_id=4)
    finally:
        server.shutdown()
    assert [request.move_originator for request, _, _ in handler.direct] == ["VIEWNODE"]


def test_with_sent_message_handlers_bound_pynetdicom_serves_the_request(
        incoming: Path) -> None:
    handler = StoreHandler(ANSWERS[:1])
    sent: list[Any] = []
    server = start_scp(handler, (evt.EVT_DIMSE_SENT, lambda event: sent.append(event.message)))
    try:
        responses, _ = store_all(server, [instance(9)])
    finally:
        server.shutdown()
    assert (handler.direct, len(handler.events)) == ([], 1)
    assert responses[0].Status == 0x0000
    assert sent
    assert list(incoming.iterdir()) == []


def test_received_files_get_new_names_past_one_that_exists(
        incoming: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_receiver, "_serial", itertools.count(5))
    first_fd, first = store_receiver._create_incoming()
    os.close(first_fd)
    taken = Path(first).with_name(Path(first).name.replace("-5.dcm", "-6.dcm"))
    taken.write_bytes(b"kept")
    monkeypatch.setattr(store_receiver, "_serial", itertools.count(6))
    second_fd, second = store_receiver._create_incoming()
    os.close(second_fd)
    assert Path(first).parent == Path(second).parent == incoming
    assert second.endswith("-7.dcm") and Path(first).name.startswith(f"{os.getpid()}-")
    assert taken.read_bytes() == b"kept"
