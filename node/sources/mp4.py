"""What a DICOM video instance needs to know about an MP4 file, read from its boxes.

The stream is never decoded: the frame size and codec come from the video track's sample
description (`stsd`), the frame count from its sample sizes (`stsz`), the frame rate from the
media header (`mdhd`). Only the `moov` box is read into memory; `mdat` is skipped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from node.errors import InvalidInput

MAX_MOOV = 64 << 20
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    frames: int
    frames_per_second: float
    # HEVC general_profile_idc (1 Main, 2 Main 10); 0 for other codecs.
    hevc_profile: int = 0


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the boxes in data[start:end]."""
    found = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                break
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            break
        found.append((kind, pos + header, pos + size))
        pos += size
    return found


def _read_moov(stream: BinaryIO) -> bytes:
    stream.seek(0)
    first = True
    while True:
        head = stream.read(8)
        if len(head) < 8:
            raise InvalidInput("not an MP4 file: no 'moov' box")
        size, kind = struct.unpack(">I4s", head)
        if first and kind != b"ftyp":
            raise InvalidInput("not an MP4 file: it does not start with an 'ftyp' box")
        first = False
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", stream.read(8))
            header = 16
        if kind == b"moov":
            if size == 0 or size - header > MAX_MOOV:
                raise InvalidInput("MP4 'moov' box too large")
            return head + stream.read(size - header)
        if size == 0:
            raise InvalidInput("not an MP4 file: no 'moov' box")
        if size < header:
            raise InvalidInput("not an MP4 file: malformed box")
        stream.seek(size - header, 1)


def video_info(stream: BinaryIO) -> VideoInfo:
    """The first video track's description; InvalidInput when there is none."""
    moov = _read_moov(stream)
    for kind, start, end in _boxes(moov, 0, len(moov)):
        if kind != b"moov":
            continue
        for trak_kind, trak_start, trak_end in _boxes(moov, start, end):
            if trak_kind == b"trak":
                info = _track(moov, trak_start, trak_end)
                if info is not None:
                    return info
    raise InvalidInput("MP4 file without a video track")


def _find(data: bytes, start: int, end: int, path: list[bytes]) -> tuple[int, int] | None:
    for kind, s, e in _boxes(data, start, end):
        if kind == path[0]:
            if len(path) == 1:
                return s, e
            if kind in _CONTAINERS:
                return _find(data, s, e, path[1:])
    return None


def _track(data: bytes, start: int, end: int) -> VideoInfo | None:
    hdlr = _find(data, start, end, [b"mdia", b"hdlr"])
    if hdlr is None or data[hdlr[0] + 8:hdlr[0] + 12] != b"vide":
        return None
    mdhd = _find(data, start, end, [b"mdia", b"mdhd"])
    stsd = _find(data, start, end, [b"mdia", b"minf", b"stbl", b"stsd"])
    stsz = _find(data, start, end, [b"mdia", b"minf", b"stbl", b"stsz"])
    if mdhd is None or stsd is None:
        raise InvalidInput("MP4 video track without 'mdhd' or 'stsd'")
    try:
        if data[mdhd[0]] == 1:
            timescale, duration = struct.unpack_from(">IQ", data, mdhd[0] + 20)
        else:
            timescale, duration = struct.unpack_from(">II", data, mdhd[0] + 12)
        entries = _boxes(data, stsd[0] + 8, stsd[1])
        if not entries:
            raise InvalidInput("MP4 video track without a sample description")
        codec_box, entry_start, entry_end = entries[0]
        width, height = struct.unpack_from(">HH", data, entry_start + 24)
        frames = struct.unpack_from(">I", data, stsz[0] + 8)[0] if stsz else 0
    except struct.error as exc:
        raise InvalidInput("MP4 video track with truncated boxes") from exc
    codec = codec_box.decode("latin-1")
    profile = 0
    if codec in ("hvc1", "hev1"):
        hvcc = _find(data, entry_start + 78, entry_end, [b"hvcC"])
        if hvcc is not None and hvcc[1] - hvcc[0] > 1:
            profile = data[hvcc[0] + 1] & 0x1F
    seconds = duration / timescale if timescale else 0.0
    fps = frames / seconds if frames and seconds else 0.0
    if not width or not height:
        raise InvalidInput("MP4 video track without a frame size")
    return VideoInfo(codec, width, height, frames, fps, profile)
