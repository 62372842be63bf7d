"""Per-instance and per-association costs of pynetdicom 3.0.4, cut without changing a byte.

- Chunked receive writes a File Meta Information header in front of every received dataset by
  building a pydicom FileMetaDataset (each UID validated by regex) and encoding it: about a
  tenth of a bare SCP's CPU per small instance. The header is a fixed layout of seven elements,
  so it is written here from bytes, exactly as pydicom writes it (tests compare the two).
- Every accepted association deep-copies the AE's supported presentation contexts (every
  storage SOP class times every transfer syntax): ~0.15 s of CPU per association here. A copy
  of each context with its own transfer syntax list is all negotiation needs (UIDs are
  immutable strings).
- Receiving a PDU read the socket 4 KiB at a time, appending to a bytearray: it now reads
  into one buffer of the PDU's size.
- Every UID a DIMSE primitive is given (the SOP Class and Instance UIDs of each received
  request and of its response) was checked with two regular expressions, pydicom's value
  validation and then its conformance check: ~6% of a received C-STORE's time. A UID that
  passes the one stricter check here passes both, and is stored as pynetdicom stores it.
- The association server ran a full garbage collection (`gc.collect()`) in its accept thread
  after every 60 associations or idle polls, holding the GIL meanwhile: ~40 ms each in a node,
  a stall for every association in flight and a tenth of the CPU of back-to-back C-FINDs
  (py-spy). Without it the cycles a finished association leaves are collected like any other
  garbage, by the collector's own thresholds (node/commands/serve_command.py sets them).

Like reactor.py, this applies only to the pynetdicom version it was written against.
"""

from __future__ import annotations

import copy
import logging
import struct
from typing import Any, BinaryIO

import pynetdicom
from pydicom.uid import UID
from pynetdicom import (
    PYNETDICOM_IMPLEMENTATION_UID,
    PYNETDICOM_IMPLEMENTATION_VERSION,
    dimse_messages,
    dimse_primitives,
    transport,
    utils,
)
from pynetdicom.presentation import PresentationContext

from node.ingest.instance_record import is_valid_uid

log = logging.getLogger(__name__)

SUPPORTED_VERSION = "3.0.4"

_installed = False


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return struct.pack("<HH2sHI", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _uid(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def file_meta_bytes(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    implementation_uid: str = PYNETDICOM_IMPLEMENTATION_UID,
    implementation_version: str = PYNETDICOM_IMPLEMENTATION_VERSION,
) -> bytes:
    """Group 0002 as pydicom's write_file_meta_info writes pynetdicom's create_file_meta."""
    version = implementation_version.encode("ascii")
    if len(version) % 2:
        version += b" "
    body = b"".join((
        _element(0x0002, 0x0001, b"OB", b"\x00\x01"),
        _element(0x0002, 0x0002, b"UI", _uid(sop_class_uid)),
        _element(0x0002, 0x0003, b"UI", _uid(sop_instance_uid)),
        _element(0x0002, 0x0010, b"UI", _uid(transfer_syntax)),
        _element(0x0002, 0x0012, b"UI", _uid(implementation_uid)),
        _element(0x0002, 0x0013, b"SH", version),
    ))
    return _element(0x0002, 0x0000, b"UL", struct.pack("<I", len(body))) + body


def _create_file_meta(
    *, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str
) -> bytes:
    return file_meta_bytes(sop_class_uid, sop_instance_uid, transfer_syntax)


def _write_file_meta_info(fp: BinaryIO, file_meta: bytes) -> None:
    fp.write(file_meta)


def _copy_contexts(value: Any, memo: dict[int, Any] | None = None) -> Any:
    if isinstance(value, list) and all(isinstance(cx, PresentationContext) for cx in value):
        copies = []
        for cx in value:
            new = PresentationContext.__new__(PresentationContext)
            new.__dict__.update(cx.__dict__)
            new._transfer_syntax = list(cx._transfer_syntax)
            copies.append(new)
        return copies
    return copy.deepcopy(value, memo)


def _recv(self: Any, nr_bytes: int) -> bytearray:
    """AssociationSocket.recv reading into one buffer, as much as the socket has, instead of
    4 KiB at a time into a growing bytearray (64 reads and copies per 256 KiB PDU)."""
    buffer = bytearray(nr_bytes)
    view = memoryview(buffer)
    received = 0
    while received < nr_bytes:
        count = self.socket.recv_into(view[received:], nr_bytes - received)
        if not count:  # the peer closed the connection: what arrived, as pynetdicom returns it
            del view
            del buffer[received:]
            return buffer
        received += count
    return buffer


_original_set_uid = utils.set_uid


def _set_uid(value: Any, name: str, allow_empty: bool = True, allow_none: bool = True,
             validate: bool = True) -> UID | None:
    """pynetdicom's set_uid, answering a conformant UID without its two validations."""
    kind = type(value)
    if (kind is UID or kind is str) and is_valid_uid(value):
        return value if kind is UID else UID(value)
    return _original_set_uid(value, name, allow_empty, allow_none, validate)


def _service_actions(self: Any) -> None:
    """Nothing between two accepts (see the module docstring)."""


def install_speedups() -> bool:
    """Install them (once); False when this pynetdicom is not the version they fit."""
    global _installed
    if _installed:
        return True
    if pynetdicom.__version__ != SUPPORTED_VERSION:
        log.warning("pynetdicom %s: keeping its own file meta writing and context copies",
                    pynetdicom.__version__)
        return False
    dimse_messages.create_file_meta = _create_file_meta  # type: ignore[assignment]
    dimse_messages.write_file_meta_info = _write_file_meta_info  # type: ignore[assignment]
    transport.deepcopy = _copy_contexts  # type: ignore[assignment]
    transport.AssociationSocket.recv = _recv  # type: ignore[method-assign]
    transport.AssociationServer.service_actions = _service_actions  # type: ignore[method-assign]
    dimse_primitives.set_uid = _set_uid
    _installed = True
    return True
