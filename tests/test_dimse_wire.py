"""DIMSE messages written to bytes (node/dimse/fastpath/message_bytes.py) equal pynetdicom's own
encoding, and a corked C-FIND over a real association delivers every response in order."""

from __future__ import annotations

import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)
from pynetdicom import AE, dimse_messages, dsutils, evt
from pynetdicom.dimse import _RQ_TO_MESSAGE, _RSP_TO_MESSAGE
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dimse_primitives import C_ECHO, C_FIND, C_GET, C_MOVE, C_STORE
from pynetdicom.dsutils import encode, split_dataset
from pynetdicom.events import Event
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from node.dimse.fastpath import command_set_reader
from node.dimse.fastpath.find_identifiers import EncodedIdentifier
from node.dimse.fastpath.message_bytes import (
    CORK_LIMIT,
    cork,
    decode_response,
    file_values,
    flush,
    message_values,
    pdus,
    read_file_meta,
)
from tests.factory import StudySpec, uid, write_jpeg_instance, write_study
from tests.fast_path import require_fast_path
from tests.peers import free_port

CT = "1.2.840.10008.5.1.4.1.1.2"
FIND = str(StudyRootQueryRetrieveInformationModelFind)


def pynetdicom_bytes(primitive: Any, context_id: int, max_pdu: int) -> bytes:
    """What pynetdicom's DIMSEServiceProvider.send_msg hands the DUL, as bytes."""
    table = _RQ_TO_MESSAGE if primitive.MessageIDBeingRespondedTo is None else _RSP_TO_MESSAGE
    message = table[type(primitive)]()
    message.primitive_to_message(primitive)
    return b"".join(P_DATA_TF(p).encode() for p in message.encode_msg(context_id, max_pdu))


def node_bytes(primitive: Any, context_id: int, max_pdu: int) -> bytes | None:
    """The PDUs the node's send_msg writes for `primitive`, as bytes (None: it leaves the
    message to pynetdicom)."""
    found = message_values(primitive, max_pdu)
    if found is None:
        return None
    values, path = found
    data = b"".join(pdus(context_id, iter(values)))
    if path:
        for chunk in file_values(path[0], path[1], max_pdu):
            data += b"".join(pdus(context_id, iter(chunk)))
    return data


def find_rsp(status: int, identifier: bytes | None) -> C_FIND:
    rsp = C_FIND()
    rsp.MessageIDBeingRespondedTo = 7
    rsp.AffectedSOPClassUID = FIND
    rsp.Status = status
    rsp.Identifier = BytesIO(identifier) if identifier is not None else None
    return rsp


def suboperations_rsp(primitive: type[C_MOVE] | type[C_GET], message_id: int, sop_class: str,
                      status: int, counts: tuple[int | None, int, int, int],
                      identifier: bytes | None = None) -> C_MOVE | C_GET:
    """A C-MOVE or C-GET response with its sub-operation counts (remaining, completed,
    failed, warning)."""
    rsp = primitive()
    rsp.MessageIDBeingRespondedTo = message_id
    rsp.AffectedSOPClassUID = sop_class
    rsp.Status = status
    (rsp.NumberOfRemainingSuboperations, rsp.NumberOfCompletedSuboperations,
     rsp.NumberOfFailedSuboperations, rsp.NumberOfWarningSuboperations) = counts
    rsp.Identifier = BytesIO(identifier) if identifier is not None else None
    return rsp


def move_rsp(status: int, remaining: int | None, identifier: bytes | None = None
             ) -> C_MOVE | C_GET:
    return suboperations_rsp(C_MOVE, 3, "1.2.840.10008.5.1.4.1.2.2.2", status,
                             (remaining, 12, 0, 1), identifier)


def get_rsp() -> C_MOVE | C_GET:
    return suboperations_rsp(C_GET, 65535, "1.2.840.10008.5.1.4.1.2.2.3", 0xFF00, (4, 1, 0, 0))


def store_rq(originator: str | None, data: bytes | None = None) -> C_STORE:
    req = C_STORE()
    req.MessageID = 9
    req.Priority = 2
    req.AffectedSOPClassUID = CT
    req.AffectedSOPInstanceUID = "1.2.826.0.1.3680043.10.1011.77.1"  # odd length: padded
    req.MoveOriginatorApplicationEntityTitle = originator
    req.MoveOriginatorMessageID = 3 if originator else None
    req.DataSet = BytesIO(data) if data is not None else None
    return req


def store_rsp(status: int) -> C_STORE:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 9
    rsp.AffectedSOPClassUID = CT
    rsp.AffectedSOPInstanceUID = "1.2.3.44"
    rsp.Status = status
    return rsp


def echo_rsp() -> C_ECHO:
    rsp = C_ECHO()
    rsp.MessageIDBeingRespondedTo = 1
    rsp.AffectedSOPClassUID = "1.2.840.10008.1.1"
    rsp.Status = 0
    return rsp


IDENTIFIER = bytes(range(256)) * 3 + b"xy"
MESSAGES = {
    "find pending": lambda: find_rsp(0xFF00, IDENTIFIER),
    "find pending, optional keys": lambda: find_rsp(0xFF01, b"\x08\x00\x52\x00"),
    "find success": lambda: find_rsp(0x0000, None),
    "find cancel": lambda: find_rsp(0xFE00, None),
    "move pending": lambda: move_rsp(0xFF00, 5),
    "move final with failed list": lambda: move_rsp(0xB000, None, b"\x08\x00\x58\x11" * 5),
    "get pending": get_rsp,
    "store rq from a move": lambda: store_rq("VIEWNODE", IDENTIFIER),
    "store rq, odd AE title": lambda: store_rq("ODD", b"ab"),
    "store rq, no originator": lambda: store_rq(None, IDENTIFIER),
    "store rsp": lambda: store_rsp(0x0000),
    "store rsp warning": lambda: store_rsp(0xB000),
    "echo rsp": lambda: echo_rsp(),
}


@pytest.mark.parametrize("max_pdu", [0, 16384, 100, 57])
@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_messages_equal_pynetdicoms_pdus(name: str, max_pdu: int) -> None:
    primitive = MESSAGES[name]()
    assert node_bytes(primitive, 5, max_pdu) == pynetdicom_bytes(primitive, 5, max_pdu)


RESPONSES_WITHOUT_DATA_SET = ["find success", "find cancel", "move pending", "get pending",
                              "store rsp", "store rsp warning", "echo rsp"]
PRIMITIVE_FIELDS = [
    "MessageIDBeingRespondedTo", "AffectedSOPClassUID", "AffectedSOPInstanceUID", "Status",
    "NumberOfRemainingSuboperations", "NumberOfCompletedSuboperations",
    "NumberOfFailedSuboperations", "NumberOfWarningSuboperations", "ErrorComment",
    "OffendingElement", "_context_id", "_dataset_path", "_dataset_file",
]


def pynetdicom_received(pdv: bytes) -> Any:
    """What pynetdicom's DIMSEServiceProvider.receive_primitive makes of one command PDV:
    its own decoding, even where the node's command reader is installed in this process."""
    message = DIMSEMessage()
    primitive = P_DATA()
    primitive.presentation_data_value_list.append((5, pdv))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dimse_messages, "decode", dsutils.decode)
        patch.setattr(DIMSEMessage, "message_to_primitive",
                      command_set_reader._original_message_to_primitive)
        assert message.decode_msg(primitive)
        return message.message_to_primitive()


@pytest.mark.parametrize("name", RESPONSES_WITHOUT_DATA_SET)
def test_received_responses_equal_pynetdicoms(name: str) -> None:
    data = pynetdicom_bytes(MESSAGES[name](), 5, 0)
    pdv = data[11:]  # after the PDU header (6) and PDV header (5): flag byte, command set
    expected = pynetdicom_received(pdv)
    found = decode_response(pdv[1:])
    assert found is not None and type(found) is type(expected)
    found._context_id = 5
    for field in PRIMITIVE_FIELDS:
        assert getattr(found, field, None) == getattr(expected, field, None), field
    for keyword in ("Identifier",):
        if hasattr(expected, keyword):
            assert getattr(found, keyword).getvalue() == getattr(expected, keyword).getvalue()


def test_requests_and_responses_with_a_data_set_are_left_to_pynetdicom() -> None:
    for name in ("find pending", "store rq from a move", "move final with failed list"):
        data = pynetdicom_bytes(MESSAGES[name](), 5, 0)
        assert decode_response(data[12:]) is None, name


def test_a_response_with_an_error_comment_equals_pynetdicoms() -> None:
    rsp = store_rsp(0xC000)
    rsp.ErrorComment = "cannot store"
    pdv = pynetdicom_bytes(rsp, 5, 0)[11:]
    found, expected = decode_response(pdv[1:]), pynetdicom_received(pdv)
    assert found is not None
    assert (found.Status, found.ErrorComment) == (expected.Status, expected.ErrorComment)
    assert found.ErrorComment == "cannot store"


@pytest.mark.parametrize("max_pdu", [0, 16384, 1000])
def test_a_stored_file_is_cut_as_pynetdicom_cuts_it(tmp_path: Path, max_pdu: int) -> None:
    path = write_study(tmp_path, StudySpec(study_uid=uid(7101), instances_per_series=1))[0]
    meta = read_file_meta(path.read_bytes())
    assert meta is not None
    req = store_rq("VIEWNODE")
    req._dataset_path = (path, meta[0])  # type: ignore[attr-defined]
    assert node_bytes(req, 3, max_pdu) == pynetdicom_bytes(req, 3, max_pdu)


def test_values_outside_the_simple_kinds_are_left_to_pynetdicom() -> None:
    rsp = store_rsp(0xC000)
    rsp.ErrorComment = "Übel"
    assert node_bytes(rsp, 1, 0) is None
    rsp = store_rsp(0xA900)
    rsp.OffendingElement = [0x00100010]
    assert node_bytes(rsp, 1, 0) is None


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_file_meta_offset_and_uids_equal_split_datasets(tmp_path: Path, syntax: str) -> None:
    path = write_study(tmp_path, StudySpec(study_uid=uid(7102), instances_per_series=1))[0]
    ds = dcmread(path)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True,
               enforce_file_format=True)
    check_meta(path)


def test_file_meta_of_a_jpeg_file_without_group_length(tmp_path: Path) -> None:
    path = tmp_path / "jpeg.dcm"
    write_jpeg_instance(path, StudySpec(study_uid=uid(7103)))
    data = path.read_bytes()
    assert data[132:136] == b"\x02\x00\x00\x00"  # drop (0002,0000): readers must not need it
    path.write_bytes(data[:132] + data[144:])
    meta = check_meta(path)
    assert meta[0x0010] == JPEGBaseline8Bit


def check_meta(path: Path) -> dict[int, str]:
    expected, offset = split_dataset(path)
    found = read_file_meta(path.read_bytes())
    assert found is not None
    assert found[0] == offset
    assert found[1][0x0002] == expected.MediaStorageSOPClassUID
    assert found[1][0x0003] == expected.MediaStorageSOPInstanceUID
    assert found[1][0x0010] == expected.TransferSyntaxUID
    return found[1]


def test_file_meta_of_a_file_without_preamble_is_not_read() -> None:
    assert read_file_meta(b"\0" * 200) is None


def identifier(index: int) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = f"CORK{index:05d}"
    ds.PatientComments = "X" * 250  # ~200 bytes each: 600 of them cross CORK_LIMIT
    return ds


COUNT = 600


@pytest.fixture(scope="module")
def corked_scp() -> Iterator[int]:
    """A pynetdicom C-FIND SCP set up as the node's, answering COUNT encoded identifiers
    through a corked association (flushing once half-way, as find_scp does between batches),
    or stopping with Cancel when the requester cancels."""
    require_fast_path()
    encoded = [encode(identifier(i), True, True, False) for i in range(COUNT)]
    assert sum(len(e) for e in encoded) > 2 * CORK_LIMIT

    def handle(event: Event) -> Iterator[tuple[int, Dataset | None]]:
        cork(event.assoc)
        assert event.assoc.dimse._node_cork == []
        wait_for_cancel = event.identifier.PatientID == "CANCEL-ME"
        for index, data in enumerate(encoded):
            cancelled = False
            if index == COUNT // 2:
                flush(event.assoc)
                # Hold the rest until the requester's C-CANCEL is in: it then always arrives
                # in the middle of the answer, however fast the first half went out.
                deadline = time.monotonic() + 30
                while wait_for_cancel and time.monotonic() < deadline:
                    if cancelled := event.is_cancelled:  # reading it takes the request
                        break
                    time.sleep(0.005)
            if cancelled or event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, EncodedIdentifier(data)

    ae = AE(ae_title="CORKED")
    ae.add_supported_context(FIND, ImplicitVRLittleEndian)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_FIND, handle)])
    yield port
    server.shutdown()


def find(port: int, cancel_after: int | None = None) -> list[tuple[int, Dataset | None]]:
    ae = AE(ae_title="REQUESTER")
    ae.add_requested_context(FIND, ImplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="CORKED")
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = "CANCEL-ME" if cancel_after is not None else ""
    query.PatientComments = ""
    responses = []
    try:
        for status, ident in assoc.send_c_find(query, FIND, msg_id=11):
            responses.append((int(status.Status), ident))
            if cancel_after is not None and len(responses) == cancel_after:
                assoc.send_c_cancel(11, query_model=FIND)
    finally:
        assoc.release()
    return responses


def test_a_corked_find_delivers_every_response_in_order(corked_scp: int) -> None:
    responses = find(corked_scp)
    assert [status for status, _ in responses] == [0xFF00] * COUNT + [0x0000]
    got = [ident.PatientID for _, ident in responses[:-1] if ident is not None]
    assert got == [f"CORK{i:05d}" for i in range(COUNT)]
    assert responses[-1][1] is None


def test_a_cancelled_corked_find_ends_with_cancel_and_the_association_goes_on(
    corked_scp: int,
) -> None:
    responses = find(corked_scp, cancel_after=5)
    statuses = [status for status, _ in responses]
    assert statuses[-1] == 0xFE00
    assert set(statuses[:-1]) == {0xFF00} and 5 <= len(statuses) - 1 < COUNT
    # The gathered responses before the cancel arrived intact and in order.
    got = [ident.PatientID for _, ident in responses[:-1] if ident is not None]
    assert got == [f"CORK{i:05d}" for i in range(len(got))]
    again = find(corked_scp)
    assert len(again) == COUNT + 1
