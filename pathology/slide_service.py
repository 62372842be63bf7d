"""Serving slides to the viewer: open slides kept open, tiles cached, reads bounded per slide.

Opening a slide costs milliseconds to seconds, so opened slides stay in an LRU and are shared by
every request for them; each slide admits a few reads at a time (asyncio.Semaphore) so that one
slide's burst cannot take every worker thread. Reading and encoding run in the service's own
thread pool, never on the event loop. Where a slide's files come from and whether it has a
colour table are asked of the database again after a few seconds, so that a new scan or a
table uploaded through another instance is picked up without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from node.errors import InvalidInput, NotFound
from node.storage.folder_storage import Storage
from pathology.catalogue import Sessions, SlideSource, locate_slide
from pathology.colour import ColourTable, bake
from pathology.cube import parse_cube
from pathology.deepzoom import (
    MEDIA_TYPES,
    DeepZoom,
    TileFormat,
    TilePlan,
    encode,
    render_tile,
    thumbnail,
)
from pathology.luts import load_lut, lut_digest
from pathology.slide import AssociatedName, Slide
from pathology.slide_opening import open_slide
from pathology.tile_cache import TileCache

log = logging.getLogger(__name__)
T = TypeVar("T")

# Bump when rendering changes, so that browsers and caches drop tiles made the old way.
RENDER_VERSION = "1"
MAX_THUMBNAIL = 2048


@dataclass(frozen=True)
class Tile:
    etag: str
    media_type: str
    # None when the caller's If-None-Match already names these bytes.
    body: bytes | None
    colour_managed: bool


@dataclass
class _Colour:
    key: str
    lut: ColourTable | None
    checked_at: float


@dataclass
class _OpenSlide:
    source: SlideSource
    slide: Slide
    deepzoom: DeepZoom
    gate: asyncio.Semaphore
    checked_at: float
    users: int = 0
    retired: bool = False
    colour: _Colour | None = None
    colour_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class SlideService:
    def __init__(
        self,
        sessions: Sessions,
        storage: Storage,
        *,
        max_open: int = 16,
        cache_bytes: int = 64 * 1024 * 1024,
        reads_per_slide: int = 4,
        workers: int = 4,
        recheck_seconds: float = 5.0,
    ) -> None:
        self.sessions = sessions
        self.storage = storage
        self.max_open = max_open
        self.reads_per_slide = reads_per_slide
        self.recheck_seconds = recheck_seconds
        self.cache = TileCache(cache_bytes)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slides")
        self._open: OrderedDict[str, _OpenSlide] = OrderedDict()
        self._opening: dict[str, asyncio.Lock] = {}
        self._inflight: dict[str, asyncio.Future[bytes]] = {}

    async def close(self) -> None:
        for entry in self._open.values():
            entry.retired = True
            if entry.users == 0:
                entry.slide.close()
        self._open.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def _run(self, func: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)

    # --- open slides ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _use(self, container_identifier: str) -> AsyncIterator[_OpenSlide]:
        entry = await self._entry(container_identifier)
        entry.users += 1
        try:
            yield entry
        except InvalidInput:
            # openslide's errors are sticky: the handle is useless now; the next request
            # reopens the file and reports whatever is wrong with it afresh.
            self._retire(container_identifier, entry)
            raise
        finally:
            entry.users -= 1
            if entry.retired and entry.users == 0:
                entry.slide.close()

    async def _entry(self, container_identifier: str) -> _OpenSlide:
        entry = self._open.get(container_identifier)
        now = time.monotonic()
        if entry is not None and now - entry.checked_at < self.recheck_seconds:
            self._open.move_to_end(container_identifier)
            return entry
        lock = self._opening.setdefault(container_identifier, asyncio.Lock())
        async with lock:
            entry = self._open.get(container_identifier)
            if entry is not None and time.monotonic() - entry.checked_at < self.recheck_seconds:
                return entry
            source = await locate_slide(self.sessions, self.storage, container_identifier)
            if entry is not None and entry.source.version == source.version:
                entry.checked_at = time.monotonic()
                self._open.move_to_end(container_identifier)
                return entry
            if entry is not None:
                self._retire(container_identifier, entry)
            slide = await self._run(open_slide, list(source.paths))
            entry = _OpenSlide(
                source=source,
                slide=slide,
                deepzoom=DeepZoom.for_slide(slide.info),
                gate=asyncio.Semaphore(self.reads_per_slide),
                checked_at=time.monotonic(),
            )
            self._open[container_identifier] = entry
            while len(self._open) > self.max_open:
                oldest, old_entry = next(iter(self._open.items()))
                self._retire(oldest, old_entry)
            return entry

    def _retire(self, container_identifier: str, entry: _OpenSlide) -> None:
        if self._open.get(container_identifier) is entry:
            del self._open[container_identifier]
        entry.retired = True
        if entry.users == 0:
            entry.slide.close()

    def forget_lut(self, container_identifier: str) -> None:
        """The slide's table changed through this instance: re-read it on the next tile."""
        entry = self._open.get(container_identifier)
        if entry is not None:
            entry.colour = None

    async def _colour(self, entry: _OpenSlide) -> _Colour:
        colour = entry.colour
        if colour is not None and time.monotonic() - colour.checked_at < self.recheck_seconds:
            return colour
        async with entry.colour_lock:
            colour = entry.colour
            if colour is not None and time.monotonic() - colour.checked_at < self.recheck_seconds:
                return colour
            cid = entry.source.container_identifier
            digest = await lut_digest(self.sessions, cid)
            icc = entry.slide.info.icc_profile
            key = _colour_key(digest, icc)
            if colour is not None and colour.key == key:
                colour.checked_at = time.monotonic()
                return colour
            stored = await load_lut(self.sessions, cid) if digest else None
            cube = await self._run(parse_cube, stored.cube) if stored else None
            lut = await self._run(bake, cube, icc)
            # A chain that changes nothing draws the same tiles as no chain: same ETag.
            entry.colour = _Colour(key if lut is not None else "raw", lut, time.monotonic())
            return entry.colour

    # --- what the routes ask for ----------------------------------------------------------

    async def describe(self, container_identifier: str) -> tuple[SlideSource, Slide, DeepZoom]:
        async with self._use(container_identifier) as entry:
            return entry.source, entry.slide, entry.deepzoom

    async def colour_key(self, container_identifier: str) -> str:
        async with self._use(container_identifier) as entry:
            return (await self._colour(entry)).key

    async def tile(
        self,
        container_identifier: str,
        level: int,
        col: int,
        row: int,
        tile_format: TileFormat,
        colour_managed: bool,
        if_none_match: str | None = None,
    ) -> Tile:
        async with self._use(container_identifier) as entry:
            plan = entry.deepzoom.plan(level, col, row)
            colour = await self._colour(entry) if colour_managed else None
            colour_key = colour.key if colour is not None else "raw"
            etag = _etag(entry.source.version, colour_key, f"{level}/{col}_{row}.{tile_format}")
            media_type = MEDIA_TYPES[tile_format]
            managed = colour is not None and colour.lut is not None
            if if_none_match is not None and etag in _etags(if_none_match):
                return Tile(etag, media_type, None, managed)
            body = self.cache.get(etag)
            if body is None and not managed and tile_format == "jpeg" and _whole_stored(
                entry.slide, plan
            ):
                # A whole stored JPEG tile is one small positioned read: cheaper on the loop
                # than the hop to a worker thread and back.
                body = entry.slide.read_encoded_tile(plan.native_level, *plan.first_tile)
                if body is not None:
                    self.cache.put(etag, body)
            if body is None:
                lut = colour.lut if colour is not None else None
                body = await self._once(etag, entry, render_tile, entry.slide, plan,
                                        tile_format, lut)
            return Tile(etag, media_type, body, managed)

    async def _once(self, etag: str, entry: _OpenSlide, func: Callable[..., bytes],
                    *args: object) -> bytes:
        """Render once however many requests ask for the same tile at the same time."""
        pending = self._inflight.get(etag)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[etag] = future
        try:
            async with entry.gate:
                body = await self._run(func, *args)
            self.cache.put(etag, body)
            future.set_result(body)
            return body
        except BaseException as exc:
            future.set_exception(exc)
            # Consumed here so that a render nobody else waited for logs no warning.
            future.exception()
            raise
        finally:
            del self._inflight[etag]

    async def associated(self, container_identifier: str, name: AssociatedName,
                         tile_format: TileFormat) -> Tile:
        async with self._use(container_identifier) as entry:
            if name not in entry.slide.info.associated_images:
                raise NotFound(f"slide {container_identifier} has no {name} image")
            etag = _etag(entry.source.version, "raw", f"{name}.{tile_format}")
            body = self.cache.get(etag)
            if body is None:
                slide = entry.slide

                def render() -> bytes:
                    return encode(slide.associated_image(name), tile_format)

                body = await self._once(etag, entry, render)
            return Tile(etag, MEDIA_TYPES[tile_format], body, False)

    async def thumbnail(self, container_identifier: str, longest: int,
                        tile_format: TileFormat) -> Tile:
        if not 1 <= longest <= MAX_THUMBNAIL:
            raise InvalidInput(f"size must be 1 to {MAX_THUMBNAIL}", field="size")
        async with self._use(container_identifier) as entry:
            etag = _etag(entry.source.version, "raw", f"thumbnail-{longest}.{tile_format}")
            body = self.cache.get(etag)
            if body is None:
                slide = entry.slide

                def render() -> bytes:
                    return encode(thumbnail(slide, longest), tile_format)

                body = await self._once(etag, entry, render)
            return Tile(etag, MEDIA_TYPES[tile_format], body, False)


def _whole_stored(slide: Slide, plan: TilePlan) -> bool:
    """The tile is a stored JPEG tile sent as it is, not one the reader crops at the edge
    (cropping decodes and re-encodes: that belongs in a worker thread)."""
    if plan.native_tile is None or not slide.info.levels[plan.native_level].jpeg_tiles:
        return False
    return plan.size == (plan.tile_size, plan.tile_size)


def _colour_key(digest: str | None, icc: bytes | None) -> str:
    icc_part = hashlib.sha256(icc).hexdigest()[:12] if icc else "none"
    return f"cube-{(digest or 'none')[:16]}-icc-{icc_part}"


def _etag(version: str, colour_key: str, what: str) -> str:
    digest = hashlib.sha256(f"{RENDER_VERSION}|{version}|{colour_key}|{what}".encode())
    return f'"{digest.hexdigest()[:32]}"'


def _etags(header: str) -> set[str]:
    return {part.strip().removeprefix("W/") for part in header.split(",")}
