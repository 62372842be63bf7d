"""JPEG previews for the IHE PDI pages: one small picture per series, from a middle instance.

Uncompressed pixel data is sampled row by row, so a 50 MB frame costs a few hundred KB of
reads; compressed frames are decoded with pydicom (Pillow for JPEG and JPEG
2000). A preview that cannot be made is left out (the pages say "no preview"), never an error.
"""

from __future__ import annotations

import io
import logging
import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

log = logging.getLogger(__name__)

PREVIEW_SIZE = 256


def render_preview(path: Path, size: int = PREVIEW_SIZE) -> bytes | None:
    """A JPEG of the middle frame of the instance at `path`, at most `size` pixels wide/high."""
    try:
        return _render(path, size)
    except Exception as exc:  # a preview is a nicety: any failure leaves it out
        log.warning("no preview for %s: %s", path.name, exc)
        return None


def _render(path: Path, size: int) -> bytes | None:
    with path.open("rb") as source:
        ds = dcmread(source, stop_before_pixels=True)
        pixel_start = source.tell()
    if "Rows" not in ds or "Columns" not in ds:
        return None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    middle = frames // 2
    step = max(1, math.ceil(max(int(ds.Rows), int(ds.Columns)) / size))
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    small = _sampled_frame(path, ds, syntax, pixel_start, middle, step)
    if small is None:
        small = np.ascontiguousarray(pixel_array(path, index=middle)[::step, ::step])
    return _to_jpeg(small, ds)


def _sampled_frame(
    path: Path, ds: Dataset, syntax: str, pixel_start: int, index: int, step: int
) -> np.ndarray[Any, Any] | None:
    """Every `step`-th pixel of every `step`-th row of the frame, read row by row, for native
    little-endian pixel data (a memory map would count the pages read around each row)."""
    if syntax not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        return None
    bits = int(ds.get("BitsAllocated", 0) or 0)
    if bits not in (8, 16, 32):
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        if os.pread(fd, 4, pixel_start) != struct.pack("<HH", 0x7FE0, 0x0010):
            return None
        value_offset = pixel_start + (8 if syntax == ImplicitVRLittleEndian else 12)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        planar = samples > 1 and int(ds.get("PlanarConfiguration", 0) or 0) == 1
        frame_start = value_offset + index * rows * columns * samples * dtype.itemsize

        def row(offset: int, length: int) -> np.ndarray[Any, Any]:
            data = os.pread(fd, length * dtype.itemsize, offset)
            if len(data) != length * dtype.itemsize:
                raise ValueError("pixel data is shorter than its attributes say")
            return np.frombuffer(data, dtype=dtype)

        lines = []
        for r in range(0, rows, step):
            if planar:
                plane = rows * columns * dtype.itemsize
                lines.append(np.stack([
                    row(frame_start + s * plane + r * columns * dtype.itemsize, columns)[::step]
                    for s in range(samples)], axis=-1))
            else:
                line = row(frame_start + r * columns * samples * dtype.itemsize,
                           columns * samples)
                lines.append(line.reshape(columns, samples)[::step] if samples > 1
                             else line[::step])
        return np.stack(lines)
    finally:
        os.close(fd)


def _to_jpeg(pixels: np.ndarray[Any, Any], ds: Dataset) -> bytes:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    if pixels.ndim == 3:
        rgb = pixels if pixels.dtype == np.uint8 else _to_uint8(pixels.astype(np.float64))
        image = Image.fromarray(rgb, mode="RGB")
    else:
        values = apply_modality_lut(pixels, ds).astype(np.float64)
        if "WindowCenter" in ds or "VOILUTSequence" in ds:
            values = apply_voi_lut(values, ds).astype(np.float64)
        gray = _to_uint8(values)
        if photometric == "MONOCHROME1":
            gray = 255 - gray
        image = Image.fromarray(gray, mode="L")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _to_uint8(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return ((values - low) * (255.0 / (high - low))).clip(0, 255).astype(np.uint8)
