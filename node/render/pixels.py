"""From stored pixel values to display values: the PS3.3 C.11 pipeline for one frame.

Grey images go through the modality LUT (rescale or Modality LUT Sequence), then the VOI
(the request's window, else the file's VOI LUT, else its first window, else the frame's full
range), then MONOCHROME1 is inverted. Colour images (RGB, YBR converted to RGB by the decoder,
palette colour through its LUT) are only brought to 8 bits. Enhanced multi-frame files keep
their rescale and window per frame in functional groups; those win over the top level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian

from node.errors import InvalidInput
from node.render.render_params import Window

COLOR_SPACES = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_PARTIAL_422",
                "YBR_ICT", "YBR_RCT")


@dataclass(frozen=True)
class DisplayFrame:
    """8-bit pixels ready to encode (H x W grey or H x W x 3 RGB) and the window applied."""

    pixels: np.ndarray
    window: Window | None


def frame_count(ds: Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        return 1


def decode_frame(path: Path, ds: Dataset, frame: int) -> np.ndarray:
    """One frame's stored values. `ds` was read with its pixel data deferred: a single-frame
    file is decoded from it (one parse of the file); for a multi-frame file only the frame is
    read and decoded, from the path."""
    frames = frame_count(ds)
    if frame >= frames:
        raise InvalidInput(f"frame {frame + 1} is past the last frame ({frames})", "frame")
    syntax = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", ""))
    if frames == 1 or syntax == DeflatedExplicitVRLittleEndian:
        # A deflated file has no pixel offset to seek to: it is decoded from memory.
        return pixel_array(ds, index=frame)
    return pixel_array(str(path), index=frame)


def to_display(arr: np.ndarray, ds: Dataset, frame: int, window: Window | None) -> DisplayFrame:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric == "PALETTE COLOR":
        return DisplayFrame(_palette(arr, ds), None)
    if arr.ndim == 3 or photometric in COLOR_SPACES:
        return DisplayFrame(_colour(arr, ds), None)
    values = modality_values(arr, ds, frame)
    chosen = window if window is not None else file_window(ds, frame)
    if chosen is None and window is None and _has_voi_lut(ds):
        grey = _voi_lut(values, ds)
    else:
        if chosen is None:
            chosen = full_range(values)
        grey = windowed(values, chosen)
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return DisplayFrame(grey, chosen)


def modality_values(arr: np.ndarray, ds: Dataset, frame: int) -> np.ndarray:
    """Stored values in output units; float32 keeps 16-bit integers exact at half the memory."""
    if "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    item = _frame_item(ds, frame, "PixelValueTransformationSequence")
    source = item if item is not None and "RescaleSlope" in item else ds
    slope = float(source.get("RescaleSlope") or 1.0)
    intercept = float(source.get("RescaleIntercept") or 0.0)
    values = arr.astype(np.float32)
    if slope != 1.0:
        values *= np.float32(slope)
    if intercept != 0.0:
        values += np.float32(intercept)
    return values


def file_window(ds: Dataset, frame: int) -> Window | None:
    """The first window the file gives for the frame, if any (a VOI LUT comes first)."""
    if _has_voi_lut(ds):
        return None
    item = _frame_item(ds, frame, "FrameVOILUTSequence")
    source = item if item is not None and "WindowCenter" in item else ds
    centre, width = _first(source.get("WindowCenter")), _first(source.get("WindowWidth"))
    if centre is None or width is None:
        return None
    function = str(source.get("VOILUTFunction") or "LINEAR").strip().upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"
    if width < (1 if function == "LINEAR" else 0) or (function != "LINEAR" and width == 0):
        return None
    return Window(centre, width, function)  # type: ignore[arg-type]


def full_range(values: np.ndarray) -> Window:
    low, high = float(values.min()), float(values.max())
    return Window((low + high + 1) / 2, max(high - low + 1, 1.0))


def windowed(values: np.ndarray, window: Window) -> np.ndarray:
    """The VOI function of PS3.3 C.11.2.1.2/C.11.2.1.3, mapped onto 0..255."""
    centre, width = window.center, window.width
    scaled: np.ndarray
    if window.function == "SIGMOID":
        scaled = 1.0 / (1.0 + np.exp(-4.0 * (values - centre) / width))
    else:
        if window.function == "LINEAR":
            centre, width = centre - 0.5, width - 1.0
        if width <= 0:
            scaled = (values > centre).astype(np.float32)
        else:
            scaled = (values - np.float32(centre)) / np.float32(width) + np.float32(0.5)
            np.clip(scaled, 0.0, 1.0, out=scaled)
    return np.rint(scaled * 255.0).astype(np.uint8)


def _has_voi_lut(ds: Dataset) -> bool:
    return bool(ds.get("VOILUTSequence"))


def _voi_lut(values: np.ndarray, ds: Dataset) -> np.ndarray:
    item = ds.VOILUTSequence[0]
    bits = int(item.LUTDescriptor[2]) or 16
    # A LUT's input is the modality output; integer indexing needs integer values.
    mapped = apply_voi(np.rint(values).astype(np.int64), ds, 0)
    top = float(2 ** bits - 1)
    return np.rint(np.clip(mapped.astype(np.float32), 0, top) * (255.0 / top)).astype(np.uint8)


def _palette(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    rgb = apply_color_lut(arr, ds)
    if rgb.dtype == np.uint8:
        return rgb
    return np.rint(rgb.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)


def _colour(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    bits = int(ds.get("BitsStored") or 8)
    if arr.dtype == np.uint8 and bits <= 8:
        return arr
    top = float(2 ** bits - 1)
    return np.rint(np.clip(arr.astype(np.float32), 0, top) * (255.0 / top)).astype(np.uint8)


def _frame_item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """A functional group macro for the frame: per-frame first, then shared."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame),
                          ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items and index < len(items):
            inner = items[index].get(sequence)
            if inner:
                return inner[0]
    return None


def _first(value: object) -> float | None:
    """The first of a multi-valued window attribute (files often carry several presets)."""
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
