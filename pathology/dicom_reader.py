"""DICOM WSI series through wsidicom: one slide is the instances sharing a ContainerIdentifier
(pyramid levels, label, overview, thumbnails).

Levels stored as baseline JPEG in YCbCr are passed through to browsers as they are: a read is
a seek and a copy, no decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType

from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import JPEGBaseline8Bit
from wsidicom import WsiDicom
from wsidicom.group import Level

from node.errors import InvalidInput, NotFound
from pathology.slide import AssociatedName, Slide, SlideInfo, SlideLevel, to_rgb

# Photometric interpretations whose JPEG a browser decodes to the right colours (JFIF YCbCr).
BROWSER_JPEG = frozenset({"YBR_FULL_422", "YBR_FULL"})


class DicomSlide(Slide):
    def __init__(self, paths: Sequence[Path]) -> None:
        source = paths[0]
        try:
            wsi = WsiDicom.open([str(p) for p in paths])
        except Exception as exc:
            # wsidicom raises its own errors, pydicom's, ValueError and KeyError on bad files:
            # all of them mean the same thing to the caller.
            raise InvalidInput(f"{source.name}: not a readable DICOM WSI series ({exc})") from exc
        self._wsi = wsi
        try:
            self._levels: list[Level] = list(wsi.levels)
            self.dataset = self._levels[0].default_instance.dataset.as_dataset()
            info = self._slide_info()
        except Exception as exc:
            wsi.close()
            raise InvalidInput(f"{source.name}: not a readable DICOM WSI series ({exc})") from exc
        super().__init__(source, info)

    def _slide_info(self) -> SlideInfo:
        base = self._levels[0]
        levels = []
        for level in self._levels:
            image_data = level.default_instance.image_data
            levels.append(SlideLevel(
                width=level.size.width,
                height=level.size.height,
                tile_width=level.tile_size.width,
                tile_height=level.tile_size.height,
                downsample=level.mpp.width / base.mpp.width,
                jpeg_tiles=image_data.transfer_syntax == JPEGBaseline8Bit
                and image_data.photometric_interpretation in BROWSER_JPEG,
            ))
        associated: list[AssociatedName] = []
        if self._wsi.labels:
            associated.append("label")
        if self._wsi.overviews:
            associated.append("macro")
        if self._wsi.pyramid.thumbnails:
            associated.append("thumbnail")
        return SlideInfo(
            format="dicom",
            levels=tuple(levels),
            mpp_x=float(base.mpp.width),
            mpp_y=float(base.mpp.height),
            associated_images=tuple(associated),
            icc_profile=icc_profile(self.dataset),
            properties=MappingProxyType({
                "dicom.ContainerIdentifier": str(self.dataset.get("ContainerIdentifier", "")),
                "dicom.SeriesInstanceUID": str(self.dataset.get("SeriesInstanceUID", "")),
            }),
        )

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> Image.Image:
        info = self.info.levels[level]
        # wsidicom refuses regions that cross the image edge: read the inside, pad with white.
        inside_w = min(width, info.width - x)
        inside_h = min(height, info.height - y)
        canvas = None
        if inside_w < width or inside_h < height:
            canvas = Image.new("RGB", (width, height), (255, 255, 255))
            if inside_w <= 0 or inside_h <= 0:
                return canvas
        try:
            region = self._wsi.read_region(
                (x, y), self._levels[level].level, (inside_w, inside_h)
            )
        except Exception as exc:
            raise InvalidInput(f"{self.source.name}: unreadable slide data ({exc})") from exc
        region = to_rgb(region)
        if canvas is None:
            return region
        canvas.paste(region, (0, 0))
        return canvas

    def read_encoded_tile(self, level: int, col: int, row: int) -> bytes | None:
        if not self.info.levels[level].jpeg_tiles:
            return None
        try:
            return self._wsi.read_encoded_tile(self._levels[level].level, (col, row))
        except Exception as exc:
            raise InvalidInput(f"{self.source.name}: unreadable slide data ({exc})") from exc

    def associated_image(self, name: AssociatedName) -> Image.Image:
        if name not in self.info.associated_images:
            raise NotFound(f"{self.source.name}: no {name} image")
        try:
            if name == "label":
                return to_rgb(self._wsi.read_label())
            if name == "macro":
                return to_rgb(self._wsi.read_overview())
            thumbnails = self._wsi.pyramid.thumbnails
            assert thumbnails is not None
            size = thumbnails[0].size
            return to_rgb(self._wsi.read_thumbnail((size.width, size.height)))
        except Exception as exc:
            raise InvalidInput(f"{self.source.name}: unreadable {name} image ({exc})") from exc

    def close(self) -> None:
        self._wsi.close()


def icc_profile(dataset: Dataset) -> bytes | None:
    """The ICC profile of the first optical path (WSI keeps it there, not at the top level)."""
    for item in dataset.get("OpticalPathSequence", []):
        profile = item.get("ICCProfile")
        if profile:
            return bytes(profile)
    profile = dataset.get("ICCProfile")
    return bytes(profile) if profile else None
