"""An A-ASSOCIATE-RQ PDU checked against PS3.8 9.3.2 before pynetdicom decodes it.

pynetdicom's decoder meets a malformed request with whatever its parsing raises (an
AssertionError, a struct.error, a KeyError for an unknown item), logs tracebacks of its own on
the way (a non-ASCII AE title), and writes the peer's bytes into log lines (an AE title with
control characters). Checked here first, a malformed request is refused with one line saying
what is wrong, and only a well-formed one reaches pynetdicom.

The check is of structure and characters only: every item and sub-item length adds up, every
item type is one PS3.8 defines for the request, AE titles and UIDs hold the characters their
value representations allow. Whether the node accepts what is asked is negotiation's business.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

PROTOCOL_FIXED_LENGTH = 68  # version, reserved, called and calling AE titles, reserved
_ITEM = struct.Struct(">BxH")
_LENGTH = struct.Struct(">H")
_UID_CHARACTERS = frozenset(b"0123456789.")
MAX_UID_LENGTH = 64


class Malformed(ValueError):
    """What is wrong with a request, in a sentence fit for a log line."""


def _items(data: bytes, where: str) -> list[tuple[int, bytes]]:
    """The (type, value) items that `data` holds exactly (PS3.8 9.3.2: type, reserved, length)."""
    items, offset = [], 0
    while offset < len(data):
        if offset + _ITEM.size > len(data):
            raise Malformed(f"{where}: an item header cut short")
        kind, length = _ITEM.unpack_from(data, offset)
        start = offset + _ITEM.size
        if start + length > len(data):
            raise Malformed(f"{where}: item 0x{kind:02X} longer than what holds it")
        items.append((kind, data[start:start + length]))
        offset = start + length
    return items


def _uid(value: bytes, what: str) -> None:
    value = value.rstrip(b"\0")  # some implementations pad UIDs to an even length
    if not 0 < len(value) <= MAX_UID_LENGTH or not _UID_CHARACTERS.issuperset(value):
        raise Malformed(f"{what} is not a UID")


def _ae_title(value: bytes, what: str) -> None:
    if not value.strip(b" ") or any(b < 0x20 or b > 0x7E or b == 0x5C for b in value):
        raise Malformed(f"{what} is not an AE title (printable ASCII, no backslash, "
                        "not all spaces)")


def _prefixed(value: bytes, offset: int, what: str) -> tuple[bytes, int]:
    """A field with a 2-byte length before it; the field and the offset after it."""
    if offset + _LENGTH.size > len(value):
        raise Malformed(f"{what}: length cut short")
    (length,) = _LENGTH.unpack_from(value, offset)
    start = offset + _LENGTH.size
    if start + length > len(value):
        raise Malformed(f"{what}: longer than its item")
    return value[start:start + length], start + length


def _fixed(size: int, what: str) -> Callable[[bytes], None]:
    def check(value: bytes) -> None:
        if len(value) != size:
            raise Malformed(f"{what}: {len(value)} bytes, not {size}")
    return check


def _role_selection(value: bytes) -> None:
    uid, offset = _prefixed(value, 0, "SCP/SCU role selection")
    _uid(uid, "SCP/SCU role selection SOP class")
    if len(value) != offset + 2:
        raise Malformed("SCP/SCU role selection: not two role bytes after the UID")


def _extended_negotiation(value: bytes) -> None:
    uid, _ = _prefixed(value, 0, "SOP class extended negotiation")
    _uid(uid, "SOP class extended negotiation SOP class")


def _common_extended_negotiation(value: bytes) -> None:
    what = "SOP class common extended negotiation"
    sop_class, offset = _prefixed(value, 0, what)
    _uid(sop_class, f"{what} SOP class")
    service_class, offset = _prefixed(value, offset, what)
    _uid(service_class, f"{what} service class")
    related, offset = _prefixed(value, offset, what)
    if offset != len(value):
        raise Malformed(f"{what}: bytes after the related general SOP classes")
    position = 0
    while position < len(related):
        uid, position = _prefixed(related, position, what)
        _uid(uid, f"{what} related general SOP class")


def _user_identity(value: bytes) -> None:
    if len(value) < 2:
        raise Malformed("user identity: cut short")
    _, offset = _prefixed(value, 2, "user identity primary field")
    _, offset = _prefixed(value, offset, "user identity secondary field")
    if offset != len(value):
        raise Malformed("user identity: bytes after its fields")


def _version_name(value: bytes) -> None:
    if not 0 < len(value) <= 16 or any(b < 0x20 or b > 0x7E or b == 0x5C for b in value):
        raise Malformed("implementation version name: not 1 to 16 printable ASCII characters")


_USER_SUB_ITEMS: dict[int, Callable[[bytes], None]] = {
    0x51: _fixed(4, "maximum length"),
    0x52: lambda value: _uid(value, "implementation class UID"),
    0x53: _fixed(4, "asynchronous operations window"),
    0x54: _role_selection,
    0x55: _version_name,
    0x56: _extended_negotiation,
    0x57: _common_extended_negotiation,
    0x58: _user_identity,
}


def _presentation_context(value: bytes) -> None:
    if len(value) < 4:
        raise Malformed("presentation context: cut short")
    sub_items = _items(value[4:], "presentation context")
    kinds = [kind for kind, _ in sub_items]
    if kinds.count(0x30) != 1 or kinds.count(0x40) < 1 or set(kinds) - {0x30, 0x40}:
        raise Malformed("presentation context: not one abstract syntax and transfer syntaxes")
    for kind, uid in sub_items:
        _uid(uid, "abstract syntax" if kind == 0x30 else "transfer syntax")


def _user_information(value: bytes) -> None:
    sub_items = _items(value, "user information")
    if sum(1 for kind, _ in sub_items if kind == 0x51) != 1:
        raise Malformed("user information: not one maximum length")
    for kind, sub_value in sub_items:
        check = _USER_SUB_ITEMS.get(kind)
        if check is None:
            raise Malformed(f"user information: unknown sub-item 0x{kind:02X}")
        check(sub_value)


def check_associate_rq(body: bytes) -> None:
    """Malformed when the A-ASSOCIATE-RQ PDU `body` (what follows its 6-byte header) breaks
    PS3.8 9.3.2's structure; its protocol version is left to pynetdicom, which answers an
    unsupported one with the A-ASSOCIATE-RJ the standard asks for."""
    if len(body) < PROTOCOL_FIXED_LENGTH:
        raise Malformed("shorter than its fixed fields")
    _ae_title(body[4:20], "called AE title")
    _ae_title(body[20:36], "calling AE title")
    items = _items(body[PROTOCOL_FIXED_LENGTH:], "A-ASSOCIATE-RQ")
    kinds = [kind for kind, _ in items]
    if kinds.count(0x10) != 1 or kinds.count(0x50) != 1 or 0x20 not in kinds:
        raise Malformed("not one application context, presentation contexts and one user "
                        "information item")
    for kind, value in items:
        if kind == 0x10:
            _uid(value, "application context name")
        elif kind == 0x20:
            _presentation_context(value)
        elif kind == 0x50:
            _user_information(value)
        else:
            raise Malformed(f"unknown item 0x{kind:02X}")
