"""A slide's colour pipeline — its scanner's ICC profile to sRGB, then the lab's .cube — baked
into one Pillow Color3DLUT, so that a tile pays for one lookup whatever the chain holds.

Pillow's trilinear filter costs several times a tile's JPEG decode and encode together, so the
baked table is expanded once more, into a lookup of every colour at 7 bits per channel (each
entry the table's value at the middle of its bin, within one 8-bit step of the filter), which a
tile applies with one gather.

The grid is sampled on source pixel values: each point goes through the ICC transform (lcms, via
PIL.ImageCms) and then through the .cube with its DOMAIN_MIN/DOMAIN_MAX, by trilinear
interpolation. A chain that changes nothing (no profile or an sRGB one, an identity .cube) bakes
to None, so tiles stay passthrough.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, ImageFilter

from pathology.cube import CubeLut

log = logging.getLogger(__name__)

# Grid points per axis when the ICC transform is in the chain (the usual size for 8-bit work).
ICC_GRID = 33
MAX_GRID = 65
# Below half an 8-bit step everywhere, a chain cannot change a pixel.
IDENTITY_TOLERANCE = 0.5 / 255


@dataclass(frozen=True, eq=False)
class ColourTable:
    lut: ImageFilter.Color3DLUT
    # Output colour of every 7-bit input colour, packed R | G << 8 | B << 16, indexed
    # (r >> 1) << 14 | (g >> 1) << 7 | b >> 1.
    packed: np.ndarray

    @classmethod
    def expand(cls, lut: ImageFilter.Color3DLUT) -> ColourTable:
        steps = np.arange(0, 256, 2, dtype=np.uint8)
        red, green, blue = np.meshgrid(steps, steps, steps, indexing="ij")
        even = np.stack([red, green, blue], axis=-1).reshape(2048, 1024, 3)
        low = np.asarray(Image.fromarray(even).filter(lut), dtype=np.uint16)
        high = np.asarray(Image.fromarray(even + 1).filter(lut), dtype=np.uint16)
        middle = ((low + high + 1) // 2).astype(np.uint32).reshape(-1, 3)
        packed = middle[:, 0] | (middle[:, 1] << 8) | (middle[:, 2] << 16)
        return cls(lut, packed)

    def apply(self, image: Image.Image) -> Image.Image:
        # RGBX pixels read as little-endian uint32 are R | G << 8 | B << 16 | X << 24: the
        # index is three masked shifts of that, no per-channel arrays.
        packed = np.frombuffer(image.convert("RGBX").tobytes(), dtype="<u4")
        index = (((packed << 13) & 0x1FC000) | ((packed >> 2) & 0x3F80)
                 | ((packed >> 17) & 0x7F))
        out = np.take(self.packed, index)
        return Image.frombytes("RGB", image.size, out.tobytes(), "raw", "RGBX")


def bake(cube: CubeLut | None, icc_profile: bytes | None) -> ColourTable | None:
    lut = bake_filter(cube, icc_profile)
    return ColourTable.expand(lut) if lut is not None else None


def bake_filter(
    cube: CubeLut | None, icc_profile: bytes | None
) -> ImageFilter.Color3DLUT | None:
    transform = _to_srgb(icc_profile) if icc_profile else None
    if cube is None and transform is None:
        return None
    if transform is None and cube is not None and cube.default_domain:
        grid_size = cube.size
        table = cube.table
    else:
        grid_size = min(MAX_GRID, max(ICC_GRID if transform else 0, cube.size if cube else 0))
        values = _grid(grid_size)
        if transform is not None:
            values = _apply_icc(transform, values)
        table = _sample(cube, values) if cube is not None else values
    if _is_identity(table, grid_size):
        return None
    flat = np.clip(table, 0.0, 1.0).reshape(-1)
    return ImageFilter.Color3DLUT(grid_size, flat.tolist(), channels=3)


def _grid(size: int) -> np.ndarray:
    """Grid point coordinates in [0, 1], shape (size, size, size, 3) indexed [b][g][r]."""
    steps = np.linspace(0.0, 1.0, size)
    blue, green, red = np.meshgrid(steps, steps, steps, indexing="ij")
    return np.stack([red, green, blue], axis=-1)


def _to_srgb(icc_profile: bytes) -> ImageCms.ImageCmsTransform | None:
    """The profile's transform to sRGB; None when it is unusable or changes no 8-bit value
    on the grid (an sRGB profile), so that such slides stay passthrough."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        target = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        transform = ImageCms.buildTransform(source, target, "RGB", "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        # A broken embedded profile should not make the slide unviewable: show it unmanaged.
        log.warning("ignoring an unusable ICC profile: %s", exc)
        return None
    grid = _grid(ICC_GRID)
    quantized = np.rint(grid * 255) / 255
    if np.max(np.abs(_apply_icc(transform, grid) - quantized)) < IDENTITY_TOLERANCE:
        return None
    return transform


def _apply_icc(transform: ImageCms.ImageCmsTransform, values: np.ndarray) -> np.ndarray:
    size = values.shape[0]
    pixels = np.rint(values.reshape(1, -1, 3) * 255).astype(np.uint8)
    image = ImageCms.applyTransform(Image.fromarray(pixels, "RGB"), transform)
    assert image is not None
    out = np.asarray(image, dtype=np.float64) / 255
    return out.reshape(size, size, size, 3)


def _sample(cube: CubeLut, values: np.ndarray) -> np.ndarray:
    """The .cube at arbitrary points: domain-normalised, clamped, trilinear."""
    low = np.asarray(cube.domain_min)
    high = np.asarray(cube.domain_max)
    position = np.clip((values - low) / (high - low), 0.0, 1.0) * (cube.size - 1)
    base = np.minimum(np.floor(position).astype(np.int64), cube.size - 2)
    fraction = position - base
    r0, g0, b0 = base[..., 0], base[..., 1], base[..., 2]
    fr, fg, fb = (fraction[..., i, np.newaxis] for i in range(3))
    t = cube.table
    out = np.zeros(values.shape, dtype=np.float64)
    for db, wb in ((0, 1 - fb), (1, fb)):
        for dg, wg in ((0, 1 - fg), (1, fg)):
            for dr, wr in ((0, 1 - fr), (1, fr)):
                out += wb * wg * wr * t[b0 + db, g0 + dg, r0 + dr]
    return out


def _is_identity(table: np.ndarray, size: int) -> bool:
    return bool(np.max(np.abs(table - _grid(size))) < IDENTITY_TOLERANCE)
