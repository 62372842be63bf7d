"""What a rendered frame depends on besides the stored file: the request's choices.

Every choice is part of the cache key, so two requests share a cached image only when they
would have produced the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from node.errors import InvalidInput

ImageFormat = Literal["jpeg", "png"]
VoiFunction = Literal["LINEAR", "LINEAR_EXACT", "SIGMOID"]

# Larger images are scaled down whatever the request says: a browser tab has no use for more.
MAX_SIDE = 4096
THUMBNAIL_SIDE = 128
DEFAULT_QUALITY = 90
# Bumped whenever the pixel pipeline changes, so that old cached images are not served.
RENDER_VERSION = 1


@dataclass(frozen=True)
class Window:
    """A VOI window in the units after the modality LUT (Hounsfield units for CT)."""

    center: float
    width: float
    function: VoiFunction = "LINEAR"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.center) and math.isfinite(self.width)):
            raise InvalidInput("window centre and width must be finite numbers", "ww")
        minimum = 1.0 if self.function == "LINEAR" else 0.0
        if self.width < minimum or (self.function != "LINEAR" and self.width == 0):
            raise InvalidInput(f"window width must be at least {minimum:g}", "ww")


@dataclass(frozen=True)
class RenderParams:
    # 0-based frame of a multi-frame instance.
    frame: int = 0
    # None: the file's own VOI (VOI LUT, else its first window), else the pixels' full range.
    window: Window | None = None
    format: ImageFormat = "png"
    quality: int = DEFAULT_QUALITY
    # Largest side in pixels; 0: the stored size (never more than MAX_SIDE).
    size: int = 0

    def __post_init__(self) -> None:
        if self.frame < 0:
            raise InvalidInput("frame numbers start at 1", "frame")
        if self.format not in ("jpeg", "png"):
            raise InvalidInput("format must be jpeg or png", "format")
        if not 1 <= self.quality <= 100:
            raise InvalidInput("quality must be between 1 and 100", "quality")
        if not 0 <= self.size <= MAX_SIDE:
            raise InvalidInput(f"size must be between 1 and {MAX_SIDE}", "size")

    @property
    def media_type(self) -> str:
        return "image/png" if self.format == "png" else "image/jpeg"

    def key_text(self) -> str:
        window = "file" if self.window is None else (
            f"{self.window.center!r}/{self.window.width!r}/{self.window.function}")
        quality = self.quality if self.format == "jpeg" else 0
        return f"v{RENDER_VERSION}|f{self.frame}|w{window}|{self.format}|q{quality}|s{self.size}"


# OHIF's thumbnail, as it asks for it (DICOMweb /thumbnail), and so what preloading renders.
THUMBNAIL = RenderParams(format="jpeg", size=THUMBNAIL_SIDE)
