"""DeepZoom geometry over a slide's own pyramid, and the rendering of one tile.

The DeepZoom tile size is the slide's native tile size, without overlap, so that a DeepZoom
level whose scale equals a native level maps each tile onto exactly one stored tile: that tile's
JPEG can then be sent as stored. Other DeepZoom levels are read from the nearest finer native
level and scaled down.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from node.errors import InvalidInput, NotFound
from pathology.colour import ColourTable
from pathology.slide import Slide, SlideInfo

TileFormat = Literal["jpeg", "png"]
MEDIA_TYPES: dict[TileFormat, str] = {"jpeg": "image/jpeg", "png": "image/png"}
DEFAULT_TILE = 256
MIN_TILE, MAX_TILE = 64, 2048
JPEG_QUALITY = 85
# The most pixels one tile or thumbnail may read (a slide without a pyramid would otherwise
# have its coarse DeepZoom levels read from full resolution).
MAX_REGION_PIXELS = 4096 * 4096
# A native level within 2% of a DeepZoom scale is that scale (openslide reports 3.99 for a
# 4x level whose size was rounded).
SCALE_TOLERANCE = 0.02


# Whole stored JPEG tiles can make a tile up to this many times smaller, decoded at 1/2, 1/4
# or 1/8 scale by libjpeg itself (DCT scaling), which is far cheaper than decoding and resizing.
GRID_FACTORS = (1, 2, 4, 8)


@dataclass(frozen=True)
class TilePlan:
    """Where one DeepZoom tile comes from: a region of a native level, scaled to `size`.

    When the native level's tile grid lines up with this tile (`grid_factor` f > 0), the tile
    is also exactly f x f stored tiles starting at `first_tile`: with f = 1 it *is* a stored
    tile (`native_tile`), which can be sent as stored."""

    native_level: int
    x: int
    y: int
    width: int
    height: int
    size: tuple[int, int]
    grid_factor: int = 0
    first_tile: tuple[int, int] = (0, 0)
    # Columns and rows of stored tiles in the native level.
    native_grid: tuple[int, int] = (0, 0)
    tile_size: int = DEFAULT_TILE

    @property
    def native_tile(self) -> tuple[int, int] | None:
        return self.first_tile if self.grid_factor == 1 else None


@dataclass(frozen=True)
class DeepZoom:
    width: int
    height: int
    tile_size: int
    # Per DeepZoom level (0 = 1x1 pixel): (native level, that level's downsample).
    sources: tuple[tuple[int, float], ...]
    # Per DeepZoom level: f when each of its tiles is f x f stored tiles (f in GRID_FACTORS),
    # 0 when the grids do not line up.
    grid_factors: tuple[int, ...]
    # (width, height) of every native level.
    native_sizes: tuple[tuple[int, int], ...]

    @classmethod
    def for_slide(cls, info: SlideInfo) -> DeepZoom:
        base = info.levels[0]
        tile = base.tile_width
        if tile != base.tile_height or not MIN_TILE <= tile <= MAX_TILE:
            # NDPI stores stripes (e.g. 144x8): no browser tile grid can match those.
            tile = DEFAULT_TILE
        max_level = math.ceil(math.log2(max(info.width, info.height, 1)))
        sources = []
        factors = []
        for level in range(max_level + 1):
            downsample = 2.0 ** (max_level - level)
            native = _best_native(info, downsample)
            native_downsample = info.levels[native].downsample
            lv = info.levels[native]
            ratio = downsample / native_downsample
            factor = next((f for f in GRID_FACTORS
                           if abs(ratio / f - 1) <= SCALE_TOLERANCE), 0)
            aligned = lv.tile_width == tile and lv.tile_height == tile
            factors.append(factor if aligned else 0)
            sources.append((native, native_downsample))
        sizes = tuple((lv.width, lv.height) for lv in info.levels)
        return cls(info.width, info.height, tile, tuple(sources), tuple(factors), sizes)

    @property
    def level_count(self) -> int:
        return len(self.sources)

    def level_size(self, level: int) -> tuple[int, int]:
        scale = 2 ** (self.level_count - 1 - level)
        return math.ceil(self.width / scale), math.ceil(self.height / scale)

    def tile_grid(self, level: int) -> tuple[int, int]:
        width, height = self.level_size(level)
        return math.ceil(width / self.tile_size), math.ceil(height / self.tile_size)

    def plan(self, level: int, col: int, row: int) -> TilePlan:
        if not 0 <= level < self.level_count:
            raise NotFound(f"DeepZoom level {level} does not exist (0 to {self.level_count - 1})")
        cols, rows = self.tile_grid(level)
        if not (0 <= col < cols and 0 <= row < rows):
            raise NotFound(f"tile {col}_{row} is outside level {level} ({cols}x{rows} tiles)")
        level_w, level_h = self.level_size(level)
        out_w = min(self.tile_size, level_w - col * self.tile_size)
        out_h = min(self.tile_size, level_h - row * self.tile_size)
        native, native_downsample = self.sources[level]
        grid_factor = self.grid_factors[level]
        native_w, native_h = self.native_sizes[native]
        native_grid = (math.ceil(native_w / self.tile_size), math.ceil(native_h / self.tile_size))
        if grid_factor == 1:
            return TilePlan(native, col * self.tile_size, row * self.tile_size, out_w, out_h,
                            (out_w, out_h), 1, (col, row), native_grid, self.tile_size)
        # Level-0 rectangle of the tile, into the native level's pixels.
        downsample = 2.0 ** (self.level_count - 1 - level)
        factor = downsample / native_downsample
        x = int(col * self.tile_size * factor)
        y = int(row * self.tile_size * factor)
        # Rounding may reach a pixel past the level's edge: stop at the edge rather than
        # scale white padding into the last row or column.
        width = max(1, min(math.ceil(out_w * factor), native_w - x))
        height = max(1, min(math.ceil(out_h * factor), native_h - y))
        return TilePlan(native, x, y, width, height, (out_w, out_h), grid_factor,
                        (col * grid_factor, row * grid_factor), native_grid, self.tile_size)

    def dzi(self, tile_format: TileFormat = "jpeg") -> str:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
            f'Format="{tile_format}" Overlap="0" TileSize="{self.tile_size}">'
            f'<Size Width="{self.width}" Height="{self.height}"/></Image>\n'
        )


def _best_native(info: SlideInfo, downsample: float) -> int:
    """The coarsest native level that is still at least as fine as `downsample`."""
    best = 0
    for index, level in enumerate(info.levels):
        if level.downsample <= downsample * (1 + SCALE_TOLERANCE):
            best = index
    return best


def render_tile(
    slide: Slide,
    plan: TilePlan,
    tile_format: TileFormat,
    colour: ColourTable | None,
) -> bytes:
    """The tile's encoded bytes. Blocks: run it in a worker thread."""
    stored_jpeg = plan.grid_factor > 0 and slide.info.levels[plan.native_level].jpeg_tiles
    if stored_jpeg and plan.grid_factor == 1 and tile_format == "jpeg" and colour is None:
        stored = slide.read_encoded_tile(plan.native_level, *plan.first_tile)
        if stored is not None:
            return stored
    if stored_jpeg:
        image = _from_stored_tiles(slide, plan)
    else:
        _check_region(slide, plan.width, plan.height)
        image = slide.read_region(plan.native_level, plan.x, plan.y, plan.width, plan.height)
        if image.size != plan.size:
            image = image.resize(plan.size, Image.Resampling.BOX)
    if colour is not None:
        image = colour.apply(image)
    return encode(image, tile_format)


def _from_stored_tiles(slide: Slide, plan: TilePlan) -> Image.Image:
    """The tile from f x f stored JPEG tiles, each decoded straight to 1/f scale."""
    factor = plan.grid_factor
    step = plan.tile_size // factor
    canvas = Image.new("RGB", plan.size, (255, 255, 255))
    first_col, first_row = plan.first_tile
    cols, rows = plan.native_grid
    for j in range(factor):
        for i in range(factor):
            col, row = first_col + i, first_row + j
            if col >= cols or row >= rows:
                continue
            data = slide.read_encoded_tile(plan.native_level, col, row)
            if data is None:
                raise InvalidInput(f"{slide.source.name}: tile {col}_{row} of level "
                                   f"{plan.native_level} is not stored as JPEG")
            stored = Image.open(io.BytesIO(data))
            if factor > 1:
                stored.draft("RGB", (max(1, stored.width // factor),
                                     max(1, stored.height // factor)))
            tile = stored.convert("RGB")
            if tile.width * factor > plan.tile_size or tile.height * factor > plan.tile_size:
                # A decoder without DCT scaling: scale the ordinary way.
                tile = tile.resize((-(-tile.width // factor), -(-tile.height // factor)),
                                   Image.Resampling.BOX)
            canvas.paste(tile, (i * step, j * step))
    return canvas


def encode(image: Image.Image, tile_format: TileFormat, quality: int = JPEG_QUALITY) -> bytes:
    out = io.BytesIO()
    if tile_format == "jpeg":
        image.save(out, format="JPEG", quality=quality)
    else:
        image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def thumbnail(slide: Slide, longest: int) -> Image.Image:
    """The whole slide scaled to fit `longest` pixels, read from the smallest level that still
    has that many (never level 0 of a real slide)."""
    info = slide.info
    scale = longest / max(info.width, info.height)
    target = (max(1, round(info.width * scale)), max(1, round(info.height * scale)))
    chosen = 0
    for index, level in enumerate(info.levels):
        if level.width >= target[0] and level.height >= target[1]:
            chosen = index
    level = info.levels[chosen]
    if level.width * level.height > MAX_REGION_PIXELS and "thumbnail" in info.associated_images:
        image = slide.associated_image("thumbnail")
        image.thumbnail(target, Image.Resampling.BOX)
        return image
    _check_region(slide, level.width, level.height)
    image = slide.read_region(chosen, 0, 0, level.width, level.height)
    return image.resize(target, Image.Resampling.BOX)


def _check_region(slide: Slide, width: int, height: int) -> None:
    if width * height > MAX_REGION_PIXELS:
        raise InvalidInput(f"{slide.source.name}: no pyramid level is small enough for this "
                           f"view (it would read {width}x{height} pixels)")
