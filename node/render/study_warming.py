"""A study made ready for OHIF's first look (fullPreloadStudy), before the viewer asks.

OHIF reads a study through DICOMweb in this order: the series list, each series' metadata, a
thumbnail per series, then the frames of the displayed series, each read by offset from its
instance's file. Warming does the node's side of each ahead of time:
- every series' metadata file is made (node/render/series_metadata.py), so that the first metadata
  request reads one JSON file instead of every instance's header;
- every instance's file is made local and read once: from S3 into the storage's read cache,
  and into the operating system's page cache either way, so that frames read by offset come
  from memory;
- each series' thumbnail, as OHIF asks for it (the middle instance, JPEG, 128 pixels), is
  rendered into the render cache.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from node.errors import NodeError
from node.render.render_params import THUMBNAIL
from node.render.renderer import FrameRenderer
from node.render.series_metadata import SeriesMetadata, make_ahead, metadata_folder
from node.render.sop_classes import is_image
from node.render.study_images import StoredSeries
from node.services import NodeServices

log = logging.getLogger(__name__)

READ_CHUNK = 1024 * 1024
# The warmer's own metadata maker keeps no series in memory (the serving one reads the files).
REMEMBERED_BYTES = 0


@dataclass(frozen=True)
class WarmResult:
    """What was made ready: series whose metadata file is current, instance files made local
    and read (with their bytes), thumbnails rendered (or found cached)."""

    series_metadata: int
    files: int
    bytes_read: int
    thumbnails: int


async def warm_study(services: NodeServices, study_uid: str, series: list[StoredSeries],
                     renderer: FrameRenderer) -> WarmResult:
    metadata = SeriesMetadata(services, metadata_folder(services.config.data_dir),
                              REMEMBERED_BYTES)
    made = files = read = thumbnails = 0
    for item in series:
        if await make_ahead(services, metadata, study_uid, item.series_uid):
            made += 1
        paths = await services.storage.local_paths_async([i.path for i in item.instances])
        read += sum(await asyncio.to_thread(_read_files, paths))
        files += len(paths)
        images = [i for i in item.instances if is_image(i.sop_class_uid, i.transfer_syntax)]
        if not images:
            continue
        middle = images[len(images) // 2]
        try:
            await renderer.render(middle.sop_uid, paths[item.instances.index(middle)],
                                  THUMBNAIL)
        except (NodeError, OSError):
            continue
        thumbnails += 1
    log.info("warming: %d series' metadata, %d files (%d bytes), %d thumbnails", made, files,
             read, thumbnails)
    return WarmResult(made, files, read, thumbnails)


def _read_files(paths: list[Path]) -> list[int]:
    """Each file read once, its bytes discarded (they stay in the page cache)."""
    sizes = []
    for path in paths:
        size = 0
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(READ_CHUNK):
                    size += len(chunk)
        except OSError:
            continue
        sizes.append(size)
    return sizes
