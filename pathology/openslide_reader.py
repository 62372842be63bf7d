"""NDPI, MRXS, SVS and generic tiled TIFF through openslide (libopenslide 4 from openslide-bin).

openslide has no access to encoded tiles, so every tile from here is decoded and re-encoded; an
OpenSlide handle is safe to share between threads, which lets the tile endpoint read in parallel.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import openslide
from PIL import Image

from node.errors import InvalidInput, NotFound
from pathology.slide import ASSOCIATED_NAMES, AssociatedName, Slide, SlideInfo, SlideLevel, to_rgb

DEFAULT_TILE = 256


def detect_format(path: Path) -> str | None:
    """openslide's vendor name for a file it can open ("aperio", "hamamatsu", "mirax",
    "generic-tiff", ...), judged from the content; None otherwise."""
    try:
        return openslide.OpenSlide.detect_format(str(path))
    except (OSError, openslide.OpenSlideError):
        return None


class OpenSlideSlide(Slide):
    def __init__(self, path: Path) -> None:
        try:
            handle = openslide.OpenSlide(str(path))
        except (OSError, openslide.OpenSlideError) as exc:
            raise InvalidInput(f"{path.name}: unreadable slide ({exc})") from exc
        self._handle = handle
        try:
            info = _slide_info(handle)
        except (OSError, openslide.OpenSlideError, ValueError) as exc:
            handle.close()
            raise InvalidInput(f"{path.name}: unreadable slide ({exc})") from exc
        super().__init__(path, info)

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> Image.Image:
        downsample = self.info.levels[level].downsample
        location = (int(x * downsample), int(y * downsample))
        try:
            region = self._handle.read_region(location, level, (width, height))
        except openslide.OpenSlideError as exc:
            raise InvalidInput(f"{self.source.name}: unreadable slide data ({exc})") from exc
        return to_rgb(region)

    def associated_image(self, name: AssociatedName) -> Image.Image:
        if name not in self.info.associated_images:
            raise NotFound(f"{self.source.name}: no {name} image")
        try:
            return to_rgb(self._handle.associated_images[name])
        except openslide.OpenSlideError as exc:
            raise InvalidInput(f"{self.source.name}: unreadable {name} image ({exc})") from exc

    def close(self) -> None:
        self._handle.close()


def _slide_info(handle: openslide.OpenSlide) -> SlideInfo:
    props = handle.properties
    levels = []
    for index, ((width, height), downsample) in enumerate(
        zip(handle.level_dimensions, handle.level_downsamples, strict=True)
    ):
        levels.append(SlideLevel(
            width=width,
            height=height,
            tile_width=int(props.get(f"openslide.level[{index}].tile-width", DEFAULT_TILE)),
            tile_height=int(props.get(f"openslide.level[{index}].tile-height", DEFAULT_TILE)),
            downsample=float(downsample),
        ))
    profile = handle.color_profile
    return SlideInfo(
        format=str(props.get(openslide.PROPERTY_NAME_VENDOR, "unknown")),
        levels=tuple(levels),
        mpp_x=_float(props.get(openslide.PROPERTY_NAME_MPP_X)),
        mpp_y=_float(props.get(openslide.PROPERTY_NAME_MPP_Y)),
        associated_images=tuple(n for n in ASSOCIATED_NAMES if n in handle.associated_images),
        icc_profile=profile.tobytes() if profile is not None else None,
        properties=MappingProxyType(dict(props)),
    )


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
