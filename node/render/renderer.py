"""Rendering stored frames with a cache: one worker pool, one render per key at a time.

The cache key names the instance, the file's size and modification time (a stored instance
replaced by a new copy gets new keys) and every parameter of the request. Renders run in a
pool of their own threads so that a burst of frame requests cannot starve the node's other
blocking work, and a frame asked for twice while it renders is rendered once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from node.errors import InvalidInput, NotFound
from node.render.cache import RenderCache
from node.render.encode import encode
from node.render.pixels import decode_frame, frame_count, to_display
from node.render.render_params import RenderParams

log = logging.getLogger(__name__)

HEADER_CACHE = 64
# Elements larger than this stay in the file until needed (the pixel data above all).
DEFER_BYTES = 16384


class NotRenderable(InvalidInput):
    """The instance has no pixels this node can draw (a document, an unknown compression)."""


@dataclass(frozen=True)
class Rendered:
    body: bytes
    media_type: str


def cache_key(sop_uid: str, path: Path, params: RenderParams) -> str:
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        raise NotFound("the stored file of this instance is missing") from exc
    text = f"{sop_uid}|{stat.st_size}|{stat.st_mtime_ns}|{params.key_text()}"
    return hashlib.sha256(text.encode()).hexdigest()


class HeaderCache:
    """Headers of recently rendered multi-frame files (pixel data left unread): playing a cine
    asks for the same header many times. Single-frame files are parsed once per render."""

    def __init__(self, size: int = HEADER_CACHE) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, int, int], Dataset] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> Dataset:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        try:
            ds = dcmread(path, defer_size=DEFER_BYTES)
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            raise NotRenderable(f"the stored file cannot be read: {exc}") from exc
        if frame_count(ds) > 1:
            with self._lock:
                self._items[key] = ds
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
        return ds


class FrameRenderer:
    def __init__(self, cache_dir: Path, workers: int | None = None) -> None:
        self.cache = RenderCache(cache_dir)
        self.headers = HeaderCache()
        self._pool = ThreadPoolExecutor(max_workers=workers or min(os.cpu_count() or 2, 8),
                                        thread_name_prefix="render")
        self._inflight: dict[str, asyncio.Future[Rendered]] = {}

    async def render(self, sop_uid: str, path: Path, params: RenderParams) -> Rendered:
        key = cache_key(sop_uid, path, params)
        running = self._inflight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Rendered] = loop.run_in_executor(
            self._pool, self.render_blocking, key, path, params)
        self._inflight[key] = future
        try:
            return await asyncio.shield(future)
        finally:
            if future.done():
                self._inflight.pop(key, None)
            else:
                future.add_done_callback(lambda _: self._inflight.pop(key, None))

    def render_blocking(self, key: str, path: Path, params: RenderParams) -> Rendered:
        entry = self.cache.get(key)
        if entry is not None:
            return Rendered(entry.body, params.media_type)
        ds = self.headers.get(path)
        try:
            arr = decode_frame(path, ds, params.frame)
            display = to_display(arr, ds, params.frame, params.window)
        except InvalidInput:
            raise
        except (ValueError, NotImplementedError, RuntimeError, KeyError, AttributeError,
                TypeError, IndexError) as exc:
            # pydicom names the missing decoder or the damaged element; that is the message.
            raise NotRenderable(f"this frame cannot be rendered: {exc}") from exc
        body = encode(display.pixels, params)
        window = display.window
        meta = {"window": None if window is None else
                [window.center, window.width, window.function],
                "frames": frame_count(ds)}
        try:
            self.cache.put(key, body, meta)
        except OSError as exc:
            log.warning("render cache write failed: %s", exc)
        return Rendered(body, params.media_type)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

