"""DICOMweb's typed application state."""

from __future__ import annotations

from aiohttp import web

from node.render.series_metadata import SeriesMetadata

METADATA = web.AppKey("dicomweb_metadata", SeriesMetadata)
