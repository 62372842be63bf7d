"""Frames of a stored instance as bytes, read by offset from its file.

A viewer fetches one frame at a time, and a multi-frame instance may hold thousands: decoding
the whole data set per frame would cost the whole file each time. The header is read without
the pixel data (deferred), which gives the pixel data's position in the file; then:
- native (uncompressed) pixel data: frame k is `frame size` bytes at `start + k * frame size`;
- encapsulated pixel data: frame k's fragments, found through the Basic or Extended Offset
  Table, or one scan of the item headers (pydicom's get_frame, on the open file).
What cannot be read that way (pixel data in a deflated data set, big endian or bit-packed
native data) is decoded with pydicom, as is a compressed frame asked for uncompressed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels import pixel_array
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from node.errors import InvalidInput, NotFound

DEFER_BYTES = 4096
PIXEL_DATA = 0x7FE00010

# Media types of the compressed syntaxes whose frames are sent as they are stored (PS3.18
# Table 8.7.3-2/-3).
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg", "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx", "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc", "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/x-dicom-rle",
}


class NotDecodable(InvalidInput):
    """Frames asked for uncompressed whose compression this node cannot decode (a video's
    MPEG-4 stream, say); they can still be had as stored."""


@dataclass(frozen=True)
class Frames:
    """Frames of one instance, and the transfer syntax their bytes are in."""

    transfer_syntax: str
    frames: list[bytes]


def frame_count(ds: Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        return 1


def read_frames(path: Path, numbers: list[int], uncompressed: bool) -> Frames:
    """Frames `numbers` (counted from 1) of the instance at `path`, as stored, or as native
    Explicit VR Little Endian bytes when `uncompressed` (decoding them if stored compressed).
    NotFound for a number past the last frame or an instance without pixel data."""
    ds = dcmread(path, defer_size=DEFER_BYTES, force=True)
    syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)))
    count = frame_count(ds)
    for number in numbers:
        if not 1 <= number <= count:
            raise NotFound(f"frame {number}: the instance has {count} frame(s)")
    element = ds.get_item(PIXEL_DATA)
    if element is None:
        raise NotFound("the instance has no pixel data")
    if syntax.is_encapsulated and not uncompressed:
        return Frames(str(syntax), _encapsulated(path, ds, element, numbers, count))
    if not syntax.is_encapsulated and _by_offset(ds, syntax, element):
        return Frames(str(ExplicitVRLittleEndian), _native(path, ds, element, numbers))
    try:
        decoded = [pixel_array(str(path), index=n - 1).tobytes() for n in numbers]
    except NotImplementedError as exc:
        raise NotDecodable(f"frames in {syntax.name} cannot be decoded here: ask for them "
                           "as stored (transfer-syntax=*)", field="transfer-syntax") from exc
    return Frames(str(ExplicitVRLittleEndian), decoded)


def _value_start(element: object) -> int:
    if not isinstance(element, RawDataElement) or element.value_tell is None:
        raise InvalidInput("the pixel data's place in the file is unknown")
    return int(element.value_tell)


def _frame_bytes(ds: Dataset) -> int:
    return (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
            * int(ds.BitsAllocated) // 8)


def _by_offset(ds: Dataset, syntax: UID, element: object) -> bool:
    """Whether native frames can be cut from the file as they lie in it."""
    return (syntax.is_little_endian and syntax != DeflatedExplicitVRLittleEndian
            and isinstance(element, RawDataElement) and element.value_tell is not None
            and int(ds.get("BitsAllocated", 0) or 0) % 8 == 0 and "Rows" in ds
            and "Columns" in ds)


def _native(path: Path, ds: Dataset, element: object, numbers: list[int]) -> list[bytes]:
    start, size = _value_start(element), _frame_bytes(ds)
    frames = []
    with path.open("rb") as file:
        for number in numbers:
            file.seek(start + (number - 1) * size)
            frame = file.read(size)
            if len(frame) != size:
                raise InvalidInput(f"frame {number} runs past the end of the stored file")
            frames.append(frame)
    return frames


def _encapsulated(path: Path, ds: Dataset, element: object, numbers: list[int],
                  count: int) -> list[bytes]:
    start = _value_start(element)
    extended = None
    if "ExtendedOffsetTable" in ds:
        extended = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    frames = []
    with path.open("rb") as file:
        for number in numbers:
            file.seek(start)
            frames.append(get_frame(file, number - 1, extended_offsets=extended,
                                    number_of_frames=count))
    return frames
