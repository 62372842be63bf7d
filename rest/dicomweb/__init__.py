"""DICOMweb (PS3.18) over the node's index and storage, at /dicom-web: QIDO-RS to search,
WADO-RS to read.

Every route takes the API key (full access) or a viewer session cookie (what its viewing context
grants, with its options applied); see access.py.
"""

from __future__ import annotations

from aiohttp import web

from node.series_metadata import SeriesMetadata
from rest.dicomweb import qido, wado
from rest.dicomweb.cors import cors_headers, preflight
from rest.dicomweb.state import METADATA
from rest.state import SERVICES

ROUTE_TABLES = (qido.routes, wado.routes)

__all__ = ["ROUTE_TABLES", "cors_headers", "preflight", "setup"]


def setup(app: web.Application) -> None:
    """The DICOMweb routes; call after the viewer's setup (its session grants and renderer are
    shared)."""
    services = app[SERVICES]
    app[METADATA] = SeriesMetadata(services, services.config.data_dir / "dicomweb-metadata")
    for table in ROUTE_TABLES:
        app.add_routes(table)
