"""Rendering a study ahead of time (fullPreloadStudy), so that its first look is a cache hit.

Order follows what the viewer asks for first: every series' thumbnail, then the first image of
each series, then the rest of the study, image by image, up to a limit. Only what the viewer
asks for by default is rendered (the file's own window, full size), so the preloaded images
are exactly the ones it will request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from node.errors import NodeError
from node.render.params import THUMBNAIL, VIEW, RenderParams
from node.render.renderer import FrameRenderer
from node.render.sop_classes import is_image
from node.render.study_images import StoredImage, study_series
from node.services import NodeServices

log = logging.getLogger(__name__)

PRELOAD_LIMIT = 2000
# Preloading shares the machine with the viewers being served: a thread or two, no more.
PRELOAD_WORKERS = 1


@dataclass(frozen=True)
class PreloadResult:
    rendered: int
    cached: int
    failed: int


async def preload_study(services: NodeServices, study_uid: str,
                        renderer: FrameRenderer | None = None,
                        limit: int = PRELOAD_LIMIT) -> PreloadResult:
    own = renderer is None
    active = renderer or FrameRenderer(services.config.data_dir / "render-cache",
                                       PRELOAD_WORKERS)
    try:
        return await _preload(services, study_uid, active, limit)
    finally:
        if own:
            await asyncio.to_thread(active.close)


async def _preload(services: NodeServices, study_uid: str, renderer: FrameRenderer,
                   limit: int) -> PreloadResult:
    async with services.sessions() as session:
        series = await study_series(session, study_uid)
    work: list[tuple[StoredImage, RenderParams]] = []
    images = [[i for i in s.instances if is_image(i.sop_class_uid, i.transfer_syntax)]
              for s in series]
    work += [(found[0], THUMBNAIL) for found in images if found]
    work += [(found[0], VIEW) for found in images if found]
    for found in images:
        for image in found[1:]:
            work.append((image, VIEW))
        for image in found:
            work += [(image, VIEW.with_frame(f)) for f in range(1, image.frames)]
    rendered = cached = failed = 0
    for image, params in work[:limit]:
        path = services.storage.absolute(image.path)
        try:
            result = await renderer.render(image.sop_uid, path, params)
        except NodeError:
            failed += 1
            continue
        if result.cached:
            cached += 1
        else:
            rendered += 1
    log.info("preload: %d rendered, %d already cached, %d not renderable",
             rendered, cached, failed)
    return PreloadResult(rendered, cached, failed)


class StudyPreloader:
    """Background preloads, each after the study's retrieval (if any) has ended."""

    def __init__(self, services: NodeServices) -> None:
        self._services = services
        self._renderer: FrameRenderer | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def schedule(self, study_uid: str, after: Awaitable[object] | None = None) -> None:
        if study_uid in self._tasks:
            return
        self._tasks[study_uid] = asyncio.create_task(
            self._run(study_uid, after), name=f"preload-{study_uid}")

    async def _run(self, study_uid: str, after: Awaitable[object] | None) -> None:
        try:
            if after is not None:
                with contextlib.suppress(Exception):
                    await after
            if self._renderer is None:
                self._renderer = FrameRenderer(
                    self._services.config.data_dir / "render-cache", PRELOAD_WORKERS)
            await preload_study(self._services, study_uid, self._renderer)
        except asyncio.CancelledError:
            raise
        except Exception:  # a failed preload only means a slower first look
            log.exception("preloading a study failed")
        finally:
            self._tasks.pop(study_uid, None)

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._renderer is not None:
            await asyncio.to_thread(self._renderer.close)
            self._renderer = None
