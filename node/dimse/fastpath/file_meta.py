"""The File Meta Information of a received data set, written from bytes (pynetdicom 3.0.4; part of
the fast path, node/dimse/fastpath/installer.py).

Chunked receive writes a File Meta Information header in front of every received dataset by
building a pydicom FileMetaDataset (each UID validated by regex) and encoding it: about a tenth of
a bare SCP's CPU per small instance. The header is a fixed layout of seven elements, so it is
written here from bytes, exactly as pydicom writes it (tests compare the two). Nothing here knows
the node: the patch could be offered to pynetdicom as it is.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from pynetdicom import (
    PYNETDICOM_IMPLEMENTATION_UID,
    PYNETDICOM_IMPLEMENTATION_VERSION,
    dimse_messages,
)

from node.dimse.fastpath.patches import Patches


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


def patch(patches: Patches) -> None:
    """pynetdicom's chunked receive gets the header as bytes and writes them as they are."""
    patches.replace(dimse_messages, "create_file_meta", _create_file_meta)
    patches.replace(dimse_messages, "write_file_meta_info", _write_file_meta_info)
