"""The content of each instance on the medium, in a transfer syntax its profile allows.

Three cases, cheapest first:
- allowed as stored: the stored file, byte for byte;
- Implicit VR Little Endian: the header is re-encoded in Explicit VR Little Endian and the pixel
  data value is spliced in from the stored file unchanged (both are little endian), so a large
  image is never decoded nor held in memory;
- anything else (Deflated, Big Endian, a compressed syntax the profile does not allow): decoded
  with pydicom and written once to a work folder that lives as long as the medium's layout.
See dicomdir.profiles for the rules.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import dcmwrite, write_dataset
from pydicom.pixels import get_decoder
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicomdir.content import BytesContent, FileRange, JoinedContent
from dicomdir.profiles import MediaProfile
from node.errors import InvalidInput

_PIXEL_TAGS = {0x7FE00010: None, 0x7FE00008: "OF", 0x7FE00009: "OD"}
UNDEFINED_LENGTH = 0xFFFFFFFF
# Bytes after the pixel data (padding, signatures) larger than this go the decoding way.
_MAX_TRAILER = 1 << 20

MediumContent = FileRange | JoinedContent | BytesContent


def medium_content(
    path: Path, sop_uid: str, stored_syntax: str, profile: MediaProfile,
    work_file: Callable[[], Path], strict: bool = True,
) -> tuple[MediumContent, str]:
    """The content of this instance on a medium of `profile`, and its transfer syntax there.

    `work_file` hands out a fresh path in the medium's work folder, for decoded copies. An
    instance that can be neither kept nor decoded is refused when `strict`, else kept as stored.
    """
    if stored_syntax in profile.transfer_syntaxes:
        return FileRange.whole(path), stored_syntax
    if stored_syntax == ImplicitVRLittleEndian:
        spliced = _splice_implicit(path)
        if spliced is not None:
            return spliced, ExplicitVRLittleEndian
    if stored_syntax != ImplicitVRLittleEndian and not _can_decode(stored_syntax):
        if not strict:
            return FileRange.whole(path), stored_syntax
        raise InvalidInput(
            f"instance {sop_uid} is stored as {UID(stored_syntax).name or stored_syntax}, "
            f"which {profile.name} does not allow and which cannot be decoded here; "
            "choose a profile that allows it",
            field="profile",
        )
    target = work_file()
    _decode_to_explicit(path, stored_syntax, target)
    return FileRange.whole(target), ExplicitVRLittleEndian


def _can_decode(syntax: str) -> bool:
    if syntax in (ExplicitVRBigEndian, ExplicitVRLittleEndian) or not UID(syntax).is_compressed:
        return True
    try:
        return bool(get_decoder(syntax).is_available)
    except NotImplementedError:
        return False


def _explicit_meta(ds: Dataset) -> None:
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    if "ImplementationVersionName" in ds.file_meta:
        del ds.file_meta.ImplementationVersionName


def _splice_implicit(path: Path) -> JoinedContent | None:
    """Explicit VR header + the stored pixel data value + the re-encoded trailer; None when the
    file does not have that simple shape (the decoding way then handles it)."""
    file_size = path.stat().st_size
    with path.open("rb") as source:
        ds = dcmread(source, stop_before_pixels=True)
        pixel_start = source.tell()
        head = source.read(8)
        if len(head) < 8:
            return JoinedContent((BytesContent(_encode_file(ds)),))
        group, element, length = struct.unpack("<HHI", head)
        tag = (group << 16) | element
        if tag not in _PIXEL_TAGS or length == UNDEFINED_LENGTH:
            return None
        value_start = pixel_start + 8
        trailer_start = value_start + length
        if trailer_start > file_size or file_size - trailer_start > _MAX_TRAILER:
            return None
        source.seek(trailer_start)
        trailer_bytes = source.read()
    vr = _PIXEL_TAGS[tag] or ("OW" if int(ds.get("BitsAllocated", 16) or 16) > 8 else "OB")
    pixel_header = struct.pack("<HH2sHI", group, element, vr.encode("ascii"), 0, length)
    parts: list[BytesContent | FileRange] = [
        BytesContent(_encode_file(ds) + pixel_header),
        FileRange(path, value_start, length, file_size),
    ]
    if trailer_bytes:
        trailer = read_dataset(io.BytesIO(trailer_bytes), is_implicit_VR=True,
                               is_little_endian=True)
        buffer = DicomBytesIO()
        buffer.is_little_endian = True
        buffer.is_implicit_VR = False
        write_dataset(buffer, trailer)
        parts.append(BytesContent(buffer.getvalue()))
    return JoinedContent(tuple(parts))


def _encode_file(ds: Dataset) -> bytes:
    _explicit_meta(ds)
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return buffer.getvalue()


def _decode_to_explicit(path: Path, stored_syntax: str, target: Path) -> None:
    ds = dcmread(path)
    if UID(stored_syntax).is_compressed:
        # The SOP Instance UID stays: the lossy step, if any, happened before, and Lossy Image
        # Compression keeps saying so.
        ds.decompress(generate_instance_uid=False)
    elif stored_syntax == ExplicitVRBigEndian and "PixelData" in ds:
        array = ds.pixel_array
        ds.PixelData = array.astype(array.dtype.newbyteorder("<")).tobytes()
        ds["PixelData"].VR = "OW" if int(ds.BitsAllocated) > 8 else "OB"
    _explicit_meta(ds)
    dcmwrite(target, ds, implicit_vr=False, little_endian=True, enforce_file_format=True)
