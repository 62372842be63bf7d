"""Getting the video stream out of a stored video instance, unchanged (DICOMweb's /rendered of
a video, which OHIF plays).

It is written once into the render cache's folder and then served from there as a file, so
that a video player's range requests (seeking) are answered by the server's file sending.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import tempfile
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread

from node.errors import InvalidInput

CHUNK = 1 << 20
ITEM = 0xFFFEE000
SEQUENCE_END = 0xFFFEE0DD


def extracted_path(cache_root: Path, sop_uid: str, source: Path, suffix: str) -> Path:
    stat = source.stat()
    key = hashlib.sha256(f"{sop_uid}|{stat.st_size}|{stat.st_mtime_ns}|{suffix}".encode())
    return cache_root / "media" / f"{key.hexdigest()}{suffix}"


def _write_atomically(target: Path, produce: object) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            produce(out)  # type: ignore[operator]
        os.replace(name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


def extract_video(source: Path, target: Path) -> None:
    """The encapsulated stream's fragments, concatenated: for MPEG-4 and HEVC syntaxes the
    stored stream is the original MP4 file."""
    if target.exists():
        return
    with source.open("rb") as fp:
        ds = dcmread(fp, stop_before_pixels=True)
        if not ds.file_meta.TransferSyntaxUID.is_encapsulated:
            raise InvalidInput("this video is not stored as an encapsulated stream")
        _skip_pixel_header(fp)

        def copy(out: BinaryIO) -> None:
            first = True
            while True:
                header = fp.read(8)
                if len(header) < 8:
                    break
                group, element, length = struct.unpack("<HHI", header)
                tag = group << 16 | element
                if tag == SEQUENCE_END:
                    break
                if tag != ITEM:
                    raise InvalidInput("damaged encapsulated pixel data")
                if first:
                    # The Basic Offset Table: not part of the stream.
                    fp.seek(length, os.SEEK_CUR)
                    first = False
                    continue
                remaining = length
                while remaining:
                    block = fp.read(min(CHUNK, remaining))
                    if not block:
                        raise InvalidInput("the stored video is truncated")
                    out.write(block)
                    remaining -= len(block)

        _write_atomically(target, copy)


def _skip_pixel_header(fp: BinaryIO) -> None:
    """After a stop_before_pixels read the file stands at the Pixel Data element; skip its
    tag, VR and (undefined) length: encapsulated data is always explicit VR little endian."""
    header = fp.read(12)
    if len(header) < 12 or header[:4] != b"\xe0\x7f\x10\x00":
        raise InvalidInput("this instance has no encapsulated pixel data")
