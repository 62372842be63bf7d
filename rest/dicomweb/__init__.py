"""DICOMweb (PS3.18) over the node's index and storage, at /dicom-web: QIDO-RS to search,
WADO-RS to read, STOW-RS to store (through the one ingest path).

Every route takes the API key (full access) or a viewer session cookie (what its viewing context
grants, with its options applied); see access.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from node.series_metadata import FOLDER as METADATA_FOLDER
from node.series_metadata import MetadataWarmer, SeriesMetadata
from rest.dicomweb import qido, stow, wado
from rest.dicomweb.cors import cors_headers, preflight
from rest.dicomweb.state import METADATA
from rest.state import SERVICES

ROUTE_TABLES = (qido.routes, wado.routes, stow.routes)

__all__ = ["ROUTE_TABLES", "cors_headers", "preflight", "setup"]


async def _warm_metadata(app: web.Application) -> AsyncIterator[None]:
    """Series metadata made ahead, while the node is idle (node/series_metadata.py)."""
    services = app[SERVICES]
    warmer = MetadataWarmer(services, app[METADATA])
    services.ingestor.listeners.append(warmer.instance_indexed)
    task = asyncio.create_task(warmer.run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    services.ingestor.listeners.remove(warmer.instance_indexed)


def setup(app: web.Application) -> None:
    """The DICOMweb routes; call after the viewer's setup (its session grants and renderer are
    shared)."""
    services = app[SERVICES]
    app[METADATA] = SeriesMetadata(services, services.config.data_dir / METADATA_FOLDER)
    app.cleanup_ctx.append(_warm_metadata)
    for table in ROUTE_TABLES:
        app.add_routes(table)
