"""The slide model every reader fills in, and the one interface tiles and images are read through.

Readers differ in what they can do cheaply (wsidicom hands out a level's encoded JPEG tiles,
openslide only decoded pixels), so the interface says which levels can pass encoded tiles through
instead of hiding it: the tile endpoint decides per request whether to decode at all.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Literal

from PIL import Image

AssociatedName = Literal["label", "macro", "thumbnail"]
ASSOCIATED_NAMES: tuple[AssociatedName, ...] = ("label", "macro", "thumbnail")


@dataclass(frozen=True)
class SlideLevel:
    """One resolution of the pyramid. `downsample` is relative to level 0 (level 0 has 1.0);
    the native tile size is what the file stores, so requests aligned to it read one tile."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    downsample: float
    # The level's native tiles are baseline JPEG a browser can show as they are.
    jpeg_tiles: bool = False


@dataclass(frozen=True)
class SlideInfo:
    format: str
    levels: tuple[SlideLevel, ...]
    # Microns per pixel at level 0, None when the file does not say.
    mpp_x: float | None
    mpp_y: float | None
    associated_images: tuple[AssociatedName, ...]
    icc_profile: bytes | None
    # Vendor and reader properties, for display and debugging: never used to decide anything.
    properties: MappingProxyType[str, str] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @property
    def width(self) -> int:
        return self.levels[0].width

    @property
    def height(self) -> int:
        return self.levels[0].height


class Slide(abc.ABC):
    """An open slide. Methods block (file I/O and decoding): call them from a worker thread.
    Every failure of the underlying library surfaces as `InvalidInput` naming `source`."""

    def __init__(self, source: Path, info: SlideInfo) -> None:
        self.source = source
        self.info = info

    @abc.abstractmethod
    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> Image.Image:
        """RGB pixels of a rectangle given in the coordinates of `level`; parts outside the image
        come back white."""

    def read_encoded_tile(self, level: int, col: int, row: int) -> bytes | None:
        """The stored JPEG of a native tile, cropped to the image edge, or None when this reader
        or level cannot give one without decoding."""
        return None

    @abc.abstractmethod
    def associated_image(self, name: AssociatedName) -> Image.Image:
        """The label, macro or thumbnail image as RGB; NotFound when the slide has none."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Slide:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB over white: readers return RGBA with transparent parts outside the scanned area."""
    if image.mode == "RGB":
        return image
    if image.mode == "RGBA":
        alpha = image.getchannel("A")
        if alpha.getextrema() == (255, 255):
            return image.convert("RGB")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=alpha)
        return background
    return image.convert("RGB")
