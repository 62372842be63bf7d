"""Received command sets read from bytes give the values and primitives pydicom's decoding gives."""

from __future__ import annotations

import struct
from io import BytesIO
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import UID
from pynetdicom import dimse
from pynetdicom.dimse_messages import _MESSAGE_TYPES, DIMSEMessage
from pynetdicom.dimse_primitives import C_ECHO, C_FIND, C_GET, C_MOVE, C_STORE
from pynetdicom.dsutils import decode, encode

from node.dimse.fastpath.command_set_reader import (
    CommandSet,
    _message_to_primitive,
    decode_command_set,
    read_command_set,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
INSTANCE = "1.2.826.0.1.3680043.8.498.12345678901234567890123"


def _primitive(cls: type, **values: Any) -> Any:
    primitive = cls()
    for name, value in values.items():
        setattr(primitive, name, value)
    return primitive


def _identifier() -> BytesIO:
    ds = Dataset()
    ds.PatientID = "P1"
    ds.QueryRetrieveLevel = "STUDY"
    return BytesIO(encode(ds, True, True))


PRIMITIVES = {
    "store request from a mover": lambda: _primitive(
        C_STORE, MessageID=7, AffectedSOPClassUID=CT, AffectedSOPInstanceUID=INSTANCE,
        Priority=0, MoveOriginatorApplicationEntityTitle="MOVER",
        MoveOriginatorMessageID=3, DataSet=BytesIO(b"\x08\x00\x16\x00\x00\x00\x00\x00")),
    "store request": lambda: _primitive(
        C_STORE, MessageID=65535, AffectedSOPClassUID=CT, AffectedSOPInstanceUID=INSTANCE,
        Priority=2, DataSet=BytesIO(b"\x08\x00\x16\x00\x00\x00\x00\x00")),
    "store request with a non-conformant UID": lambda: _primitive(
        C_STORE, MessageID=5, AffectedSOPClassUID=CT, AffectedSOPInstanceUID="1.2.03.4",
        Priority=2, DataSet=BytesIO(b"\x08\x00\x16\x00\x00\x00\x00\x00")),
    "store warning with comment": lambda: _primitive(
        C_STORE, MessageIDBeingRespondedTo=9, AffectedSOPClassUID=CT,
        AffectedSOPInstanceUID=INSTANCE, Status=0xB000, ErrorComment="duplicate: kept"),
    "store failure with offending elements": lambda: _primitive(
        C_STORE, MessageIDBeingRespondedTo=1, AffectedSOPClassUID=CT,
        AffectedSOPInstanceUID=INSTANCE, Status=0xA900,
        OffendingElement=[Tag(0x0008, 0x0018), Tag(0x0010, 0x0020)], ErrorComment="odd"),
    "echo request": lambda: _primitive(C_ECHO, MessageID=1,
                                       AffectedSOPClassUID="1.2.840.10008.1.1"),
    "find request": lambda: _primitive(C_FIND, MessageID=2, AffectedSOPClassUID=FIND,
                                       Priority=2, Identifier=_identifier()),
    "find pending match": lambda: _primitive(
        C_FIND, MessageIDBeingRespondedTo=2, AffectedSOPClassUID=FIND, Status=0xFF00,
        Identifier=_identifier()),
    "move request": lambda: _primitive(C_MOVE, MessageID=3, AffectedSOPClassUID=MOVE,
                                       Priority=0, MoveDestination="STORESCP",
                                       Identifier=_identifier()),
    "get pending": lambda: _primitive(
        C_GET, MessageIDBeingRespondedTo=4, AffectedSOPClassUID=MOVE, Status=0xFF00,
        NumberOfRemainingSuboperations=7, NumberOfCompletedSuboperations=2,
        NumberOfFailedSuboperations=1, NumberOfWarningSuboperations=0),
}


def _encoded_command_set(primitive: Any) -> bytes:
    if primitive.MessageIDBeingRespondedTo is None:
        message = dimse._RQ_TO_MESSAGE[primitive.__class__]()
    else:
        message = dimse._RSP_TO_MESSAGE[primitive.__class__]()
    message.primitive_to_message(primitive)
    return encode(message.command_set, True, True)


def _received(command_set: Any) -> DIMSEMessage:
    """A message as decode_msg leaves it: its class from the Command Field, no data set."""
    message = DIMSEMessage()
    message.command_set = command_set
    message.__class__ = dimse_messages_class(command_set.CommandField)
    message.context_id = 1
    message.data_set = BytesIO()
    return message


def dimse_messages_class(field: int) -> type:
    return _MESSAGE_TYPES[field][1]


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_values_equal_pydicoms(name: str) -> None:
    raw = _encoded_command_set(PRIMITIVES[name]())
    expected = decode(BytesIO(raw), True, True)
    read = read_command_set(raw)
    assert list(read.values) == [elem.keyword for elem in expected]
    for elem in expected:
        assert read.values[elem.keyword] == elem.value, elem.keyword


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_primitive_equals_the_one_pynetdicom_builds(name: str) -> None:
    raw = _encoded_command_set(PRIMITIVES[name]())
    ours = _message_to_primitive(_received(read_command_set(raw)))
    theirs = _received(decode(BytesIO(raw), True, True)).message_to_primitive()
    assert type(ours) is type(theirs)
    attributes = [name for name in dir(theirs) if name[0].isupper()]
    assert attributes
    for attribute in attributes:
        mine, pynetdicoms = getattr(ours, attribute), getattr(theirs, attribute)
        if isinstance(pynetdicoms, BytesIO):  # each message has its own buffer
            mine, pynetdicoms = mine.getvalue(), pynetdicoms.getvalue()
        assert mine == pynetdicoms, attribute
        if isinstance(pynetdicoms, UID):
            assert type(mine) is UID, attribute


def test_an_unknown_element_is_left_to_pydicom() -> None:
    raw = _encoded_command_set(PRIMITIVES["echo request"]())
    private = struct.pack("<HHI", 0x0000, 0x5555, 2) + b"AB"  # not a command element
    decoded = decode_command_set(BytesIO(raw + private), True, True)
    assert isinstance(decoded, Dataset)
    assert decoded.CommandField == 0x0030


def test_a_known_command_set_is_read_here() -> None:
    raw = _encoded_command_set(PRIMITIVES["store request"]())
    decoded = decode_command_set(BytesIO(raw), True, True)
    assert isinstance(decoded, CommandSet)
    assert decoded.AffectedSOPInstanceUID == INSTANCE
    assert decoded.CommandDataSetType == 0x0001
