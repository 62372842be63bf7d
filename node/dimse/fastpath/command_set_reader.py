"""DIMSE command sets read straight from bytes on the receive path (pynetdicom 3.0.4; part of
the fast path, node/dimse/fastpath/installer.py).

The mirror of message_bytes.py's send path. pynetdicom decodes every received command set into a
pydicom Dataset, then copies each element onto a new primitive, turning each raw element into a
DataElement on the way: for a stored instance ~11% of the node's CPU (py-spy over 2,000 small
C-STOREs), spent on a dozen group 0000 elements in Implicit VR Little Endian (PS3.7 6.3). Here
they are read into a plain mapping (`CommandSet`) that answers the few attributes
`DIMSEMessage.decode_msg` asks for, and `message_to_primitive` sets the primitive from it: the
same values pydicom would give (tests/test_dimse_command_reader.py compares them).

A command set with an element this reader does not know (a private or retired tag, an unusual
VR) is decoded by pydicom as before. pynetdicom's own message logging (`--verbose`) reads the
command set as a pydicom Dataset: the node then runs without the fast path.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterator
from io import BytesIO
from typing import Any

from pydicom.datadict import dictionary_VM, dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pynetdicom import dimse_messages

from node.dimse.fastpath.patches import Patches

log = logging.getLogger(__name__)


_ELEMENT_HEADER = struct.Struct("<HHI")
# pynetdicom keeps every value of these two, and the first of any other element.
_MULTIVALUE = frozenset({"OffendingElement", "AttributeIdentifierList"})


class Unknown(Exception):
    """An element this reader does not read; pydicom decodes the command set instead."""


def _text(raw: bytes) -> str:
    if b"\\" in raw:  # several values: pydicom's MultiValue
        raise Unknown
    return raw.decode("ascii").rstrip(" \x00")


def _ae(raw: bytes) -> str:
    return _text(raw).lstrip(" ")


def _numbers(fmt: str, size: int) -> Callable[[bytes], int | list[int]]:
    def read(raw: bytes) -> int | list[int]:
        if len(raw) % size:
            raise Unknown
        values = list(struct.unpack(f"<{len(raw) // size}{fmt}", raw))
        return values[0] if len(values) == 1 else values
    return read


def _tags(raw: bytes) -> int | list[int]:
    if len(raw) % 4:
        raise Unknown
    pairs = struct.iter_unpack("<HH", raw)
    tags = [group << 16 | element for group, element in pairs]
    return tags[0] if len(tags) == 1 else tags


# Per VR: how a value is read, and what an empty one is (pydicom: "" for text, None otherwise).
_READERS: dict[str, tuple[Callable[[bytes], Any], Any]] = {
    "UI": (_text, ""), "AE": (_ae, ""), "LO": (_text, ""), "SH": (_text, ""),
    "ST": (_text, ""), "CS": (_text, ""),
    "US": (_numbers("H", 2), None), "UL": (_numbers("I", 4), None), "AT": (_tags, None),
}


def _known_elements() -> dict[int, tuple[str, Callable[[bytes], Any], Any]]:
    known = {}
    for keywords in dimse_messages._COMMAND_SET_KEYWORDS.values():
        for keyword in keywords:
            tag = tag_for_keyword(keyword)
            assert tag is not None, keyword
            reader = _READERS.get(dictionary_VR(tag))
            if reader is not None and dictionary_VM(tag) in ("1", "1-n"):
                known[tag] = (keyword, *reader)
    return known


_KNOWN = _known_elements()


class CommandSet:
    """A received command set: its values by keyword, in tag order, readable as attributes."""

    __slots__ = ("values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def __getattr__(self, keyword: str) -> Any:
        try:
            return self.values[keyword]
        except KeyError:
            raise AttributeError(keyword) from None

    def __contains__(self, keyword: str) -> bool:
        return keyword in self.values


def read_command_set(raw: bytes) -> CommandSet:
    """The elements of an Implicit VR Little Endian command set; raises Unknown."""
    values: dict[str, Any] = {}
    offset, end = 0, len(raw)
    while offset < end:
        if end - offset < 8:
            raise Unknown
        group, element, length = _ELEMENT_HEADER.unpack_from(raw, offset)
        offset += 8
        value = raw[offset:offset + length]
        offset += length
        if len(value) != length:
            raise Unknown
        known = _KNOWN.get(group << 16 | element)
        if known is None:
            raise Unknown
        keyword, reader, empty = known
        try:
            values[keyword] = reader(value) if length else empty
        except UnicodeDecodeError:
            raise Unknown from None
    return CommandSet(values)


def decode_command_set(fp: BytesIO, is_implicit_vr: bool, is_little_endian: bool) -> Any:
    """In place of pynetdicom's `decode` for command sets (the only use in dimse_messages)."""
    if is_implicit_vr and is_little_endian:
        try:
            return read_command_set(fp.getvalue())
        except Unknown:
            fp.seek(0)
    return _pydicom_decode(fp, is_implicit_vr, is_little_endian)


def primitive_values(command_set: CommandSet) -> Iterator[tuple[str, Any]]:
    """What message_to_primitive sets: pynetdicom keeps the first of several values of a
    single-valued element, with a warning."""
    for keyword, value in command_set.values.items():
        if isinstance(value, list) and keyword not in _MULTIVALUE:
            log.warning("Non-conformant VM %d for '%s', taking the first value",
                        len(value), keyword)
            value = value[0]
        yield keyword, value



def build_primitive(
    message_name: str, command_set: CommandSet, data_set: BytesIO | None, context_id: int | None
) -> Any:
    """The primitive pynetdicom's message_to_primitive makes of message `message_name`
    ("C_STORE_RQ", ...) with this command set and data set."""
    primitive: Any = dimse_messages._MSG_TO_PRIMITVE[message_name[:message_name.rfind("_R")]]()
    for keyword, value in primitive_values(command_set):
        if hasattr(primitive, keyword):
            setattr(primitive, keyword, value)
    dataset_keyword = dimse_messages._DATASET_KEYWORDS.get(message_name)
    if dataset_keyword is not None:
        setattr(primitive, dataset_keyword, data_set)
    primitive._context_id = context_id
    return primitive


def _message_to_primitive(self: Any) -> Any:
    if not isinstance(self.command_set, CommandSet):
        return _original_message_to_primitive(self)
    primitive = build_primitive(
        type(self).__name__, self.command_set, self.data_set, self.context_id
    )
    primitive._dataset_path = self._data_set_path
    primitive._dataset_file = self._data_set_file
    return primitive


_pydicom_decode: Callable[..., Dataset] = dimse_messages.decode
_original_message_to_primitive: Callable[[Any], Any] = (
    dimse_messages.DIMSEMessage.message_to_primitive
)


def patch(patches: Patches) -> None:
    """Read received command sets here."""
    patches.replace(dimse_messages, "decode", decode_command_set)
    patches.replace(dimse_messages.DIMSEMessage, "message_to_primitive", _message_to_primitive)
