"""Small non-DICOM files for the POST API's tests: images by Pillow, a PDF and an MP4 written
box by box (a real container layout with a placeholder stream: nothing decodes it)."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image


def image_bytes(fmt: str, size: tuple[int, int] = (48, 32), mode: str = "RGB",
                **options: object) -> bytes:
    width, height = size
    ramp = np.arange(width * height, dtype=np.uint32).reshape(height, width)
    if mode == "RGB":
        pixels = np.stack([ramp % 256, (ramp // 3) % 256, (255 - ramp) % 256], axis=-1)
        image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    elif mode == "L":
        image = Image.fromarray((ramp % 256).astype(np.uint8), "L")
    elif mode == "I;16":
        image = Image.fromarray((ramp * 97 % 65536).astype(np.uint16))
    else:
        image = Image.fromarray((ramp % 256).astype(np.uint8), "L").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def pdf_bytes(title: str = "report") -> bytes:
    """A one-page PDF (odd length on purpose: the DICOM value must be padded)."""
    body = (
        "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        "2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
        "3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
        f"trailer<</Root 1 0 R/Title({title})>>\n%%EOF"
    ).encode()
    return body if len(body) % 2 else body + b"\n\n\n"[:1] + b" "


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _full(kind: bytes, payload: bytes, version: int = 0, flags: int = 0) -> bytes:
    return _box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)


def mp4_bytes(width: int = 320, height: int = 240, frames: int = 50, fps: int = 25,
              codec: bytes = b"avc1", moov_last: bool = False) -> bytes:
    """ftyp, moov (one video track: tkhd, mdhd, hdlr 'vide', stsd, stsz) and mdat."""
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomavc1mp41")
    mvhd = _full(b"mvhd", struct.pack(">IIII", 0, 0, 1000, frames * 1000 // fps) + bytes(80))
    tkhd = _full(b"tkhd", bytes(76) + struct.pack(">II", width << 16, height << 16), flags=3)
    mdhd = _full(b"mdhd", struct.pack(">IIIIHH", 0, 0, fps * 100, frames * 100, 0x55C4, 0))
    hdlr = _full(b"hdlr", bytes(4) + b"vide" + bytes(12) + b"video\x00")
    config = (_box(b"avcC", b"\x01\x64\x00\x29\xff\xe0\x00") if codec.startswith(b"avc")
              else _box(b"hvcC", b"\x01\x02" + bytes(21)))
    entry = _box(codec, bytes(6) + struct.pack(">H", 1) + bytes(16)
                 + struct.pack(">HHIII", width, height, 0x480000, 0x480000, 0)
                 + struct.pack(">H", 1) + bytes(32) + struct.pack(">Hh", 0x18, -1) + config)
    stsd = _full(b"stsd", struct.pack(">I", 1) + entry)
    stsz = _full(b"stsz", struct.pack(">II", 0, frames) + struct.pack(f">{frames}I",
                                                                        *([16] * frames)))
    stbl = _box(b"stbl", stsd + stsz)
    trak = _box(b"trak", tkhd + _box(b"mdia", mdhd + hdlr + _box(b"minf", stbl)))
    moov = _box(b"moov", mvhd + trak)
    mdat = _box(b"mdat", bytes(range(16)) * frames + b"\x01")
    return ftyp + (mdat + moov if moov_last else moov + mdat)
