"""C-FIND response identifiers written straight to bytes from the index's values (part of the fast
path, node/dimse/fastpath/installer.py: pynetdicom's C-FIND service class takes them only with
the fast path in; without it the handler yields pydicom Datasets).

`response_identifier` builds a pydicom Dataset per match and pynetdicom encodes it: ~0.5 ms of
CPU per match, most of a large answer. The identifiers of one query all have the same elements
(the requested ones, the level, the retrieve AE title, the unique keys), so the layout is worked
out once per query and each match only encodes its values: strings, in the transfer syntax the
requester negotiated (implicit or explicit VR little endian) and the match's Specific Character
Set, with pydicom's padding and element order. Tests hold the bytes equal to pydicom's.

Whatever this does not write exactly as pydicom would (deflate or big endian syntaxes, value
kinds other than strings, ISO 2022 character sets, a value its character set cannot encode,
an explicit VR value too long for a 16-bit length) gets None, and the caller builds the Dataset.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from node.dimse.fastpath.light_dataset import init_empty
from node.dimse.fastpath.patches import Patches
from node.dimse.qr_identifier import ParsedIdentifier, response_fields
from node.index.query import FindMatch

# Values pydicom encodes with the Specific Character Set; the others it writes as ISO 8859-1.
_TEXT_VRS = {"PN", "SH", "LO", "ST", "LT", "UC", "UT"}
_STRING_VRS = _TEXT_VRS | {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"}
# Explicit VR elements with a 32-bit length (PS3.5 7.1.2).
_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
_ALL_VRS = _STRING_VRS | _LONG_VRS | {"AT", "FD", "FL", "SL", "SS", "UL", "US"}
# Specific Character Set values of one single-byte or stateless multi-byte character set, and
# the Python codec pydicom uses for each (pydicom.charset.python_encoding).
_CODECS = {
    "": "iso8859",  # no Specific Character Set: pydicom's default
    "ISO_IR 6": "iso8859",
    "ISO_IR 100": "latin_1", "ISO_IR 101": "iso8859_2", "ISO_IR 109": "iso8859_3",
    "ISO_IR 110": "iso8859_4", "ISO_IR 144": "iso_ir_144", "ISO_IR 127": "iso_ir_127",
    "ISO_IR 126": "iso_ir_126", "ISO_IR 138": "iso_ir_138", "ISO_IR 148": "iso_ir_148",
    "ISO_IR 166": "iso_ir_166", "ISO_IR 203": "latin_9", "ISO_IR 192": "UTF8",
    "GB18030": "GB18030", "GBK": "GBK",
}
_IMPLICIT = {ImplicitVRLittleEndian: True, ExplicitVRLittleEndian: False}
_CHARSET_TAG = 0x00080005


class _Value:
    """One element whose value comes from the match."""

    __slots__ = ("keyword", "length", "limit", "pad", "prefix", "strip", "text")

    def __init__(self, keyword: str, prefix: bytes, length: Callable[[int], bytes], vr: str,
                 limit: int) -> None:
        self.keyword = keyword
        self.prefix = prefix
        self.length = length
        self.text = vr in _TEXT_VRS
        # pydicom's IS, DS and UID strip each value (IS/DS keep a blank one as it is); its
        # PersonName drops empty component groups at the end ("A^B=" is written "A^B").
        self.strip = 2 if vr == "UI" else 1 if vr in ("IS", "DS", "PN") else 0
        self.pad = b"\0" if vr == "UI" else b" "
        self.limit = limit


class IdentifierEncoder:
    """The response identifiers of one C-FIND query, as bytes."""

    def __init__(self, parsed: ParsedIdentifier, retrieve_ae_title: str, implicit: bool) -> None:
        self.implicit = implicit
        self._charset = self._element(_CHARSET_TAG, "CS", "_charset")
        slots: list[tuple[int, bytes | _Value]] = []
        level, ae_title, requested, unique = response_fields(parsed, retrieve_ae_title)
        for tag, vr, value in (
            (0x00080052, "CS", level),
            (0x00080054, "AE", ae_title),
        ):
            if not value.isascii():
                raise ValueError(f"{value!r} is not an ASCII {vr} value")
            encoded = value.encode("ascii")
            if len(encoded) % 2:
                encoded += b" "
            slots.append((tag, self._header(tag, vr, len(encoded)) + encoded))
        for elem in requested:
            vr = str(elem.VR)
            if vr not in _ALL_VRS:
                raise ValueError(f"VR {vr} of {elem.tag} is not written here")
            tag = int(elem.tag)
            if vr == "SQ" or not elem.keyword:
                # Always empty: sequences, elements without a keyword.
                slots.append((tag, self._header(tag, vr, 0)))
            elif vr in _STRING_VRS:
                slots.append((tag, self._element(tag, vr, elem.keyword)))
            else:
                raise ValueError(f"{elem.keyword} as {vr} is not written here")
        for keyword in unique:
            unique_tag = tag_for_keyword(keyword)
            assert unique_tag is not None
            slots.append((unique_tag, self._element(unique_tag, dictionary_VR(unique_tag),
                                                    keyword)))
        if len({tag for tag, _ in slots}) != len(slots) or any(t == _CHARSET_TAG for t, _ in slots):
            raise ValueError("an element is requested twice")
        self._before = [slot for tag, slot in sorted(slots) if tag < _CHARSET_TAG]
        self._after = [slot for tag, slot in sorted(slots) if tag > _CHARSET_TAG]
        self._codecs: dict[str, str | None] = {}

    @classmethod
    def for_syntax(cls, parsed: ParsedIdentifier, retrieve_ae_title: str,
                   transfer_syntax: str) -> IdentifierEncoder | None:
        """An encoder for the negotiated transfer syntax, or None when it is not one written
        here (or the identifier holds something this does not write)."""
        implicit = _IMPLICIT.get(transfer_syntax)  # type: ignore[call-overload]
        if implicit is None:
            return None
        try:
            return cls(parsed, retrieve_ae_title, implicit)
        except ValueError:
            return None

    def encode(self, match: FindMatch) -> bytes | None:
        """The identifier pydicom would write for response_identifier(...); None when this
        match needs pydicom (its character set or a value it cannot encode)."""
        charset = match.charset
        codec = self._codecs.get(charset, "?")
        if codec == "?":
            codec = self._codecs[charset] = _CODECS.get(charset)
        if codec is None:
            return None
        values = match.values
        parts: list[bytes] = []
        try:
            if not self._append(parts, self._before, values, codec):
                return None
            if charset:
                raw = charset.encode("ascii")
                if len(raw) % 2:
                    raw += b" "
                parts.append(self._charset.prefix + self._charset.length(len(raw)) + raw)
            if not self._append(parts, self._after, values, codec):
                return None
        except UnicodeEncodeError:
            return None
        return b"".join(parts)

    @staticmethod
    def _append(parts: list[bytes], slots: list[bytes | _Value], values: dict[str, str],
                codec: str) -> bool:
        for slot in slots:
            if type(slot) is bytes:
                parts.append(slot)
                continue
            assert isinstance(slot, _Value)
            value = values.get(slot.keyword)
            if not value:
                parts.append(slot.prefix + slot.length(0))
                continue
            if slot.text:
                if slot.strip:
                    value = _without_empty_groups(value)
                raw = value.encode(codec)
                if len(raw) % 2:
                    raw += b" "
            else:
                if slot.strip:
                    value = _stripped(value, slot.strip == 2)
                raw = value.encode("latin_1")
                if len(raw) % 2:
                    raw += slot.pad
            if len(raw) > slot.limit:
                return False
            parts.append(slot.prefix + slot.length(len(raw)))
            parts.append(raw)
        return True

    def _header(self, tag: int, vr: str, length: int) -> bytes:
        element = self._element(tag, vr, "")
        return element.prefix + element.length(length)

    def _element(self, tag: int, vr: str, keyword: str) -> _Value:
        group_element = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
        if self.implicit:
            return _Value(keyword, group_element, _UL.pack, vr, 0xFFFFFFFE)
        if vr in _LONG_VRS:
            return _Value(keyword, group_element + vr.encode() + b"\0\0", _UL.pack, vr,
                          0xFFFFFFFE)
        return _Value(keyword, group_element + vr.encode(), _US.pack, vr, 0xFFFF)


_UL = struct.Struct("<L")
_US = struct.Struct("<H")


def _without_empty_groups(value: str) -> str:
    if "\\" not in value:
        return value.rstrip("=")
    return "\\".join(p.rstrip("=") for p in value.split("\\"))


def _stripped(value: str, blank_too: bool) -> str:
    if "\\" not in value:
        return value.strip() if blank_too or value.strip() else value
    return "\\".join(p.strip() if blank_too or p.strip() else p for p in value.split("\\"))


class EncodedIdentifier(Dataset):
    """A response identifier already encoded: pynetdicom's encode() hands `encoded` back
    (see patch)."""

    def __init__(self, encoded: bytes) -> None:
        init_empty(self)
        self.__dict__["encoded"] = encoded


def patch(patches: Patches) -> None:
    """Let the C-FIND service class take an EncodedIdentifier."""
    from pynetdicom import service_class

    original = service_class.encode

    def encode(ds: Any, *args: Any, **kwargs: Any) -> bytes | None:
        if type(ds) is EncodedIdentifier:
            return ds.encoded
        return original(ds, *args, **kwargs)

    patches.replace(service_class, "encode", encode)
