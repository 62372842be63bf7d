"""DICOMweb (PS3.18) over the node's index and storage, at /dicom-web: QIDO-RS to search,
STOW-RS to store (through the one ingest path).

Every route takes the API key (full access) or a viewer session cookie (what its viewing context
grants, with its options applied); see access.py.
"""

from __future__ import annotations

from aiohttp import web

from rest.dicomweb import qido, stow

ROUTE_TABLES = (qido.routes, stow.routes)

__all__ = ["ROUTE_TABLES", "setup"]


def setup(app: web.Application) -> None:
    """The DICOMweb routes; call after the viewer's setup (its session grants are shared)."""
    for table in ROUTE_TABLES:
        app.add_routes(table)
