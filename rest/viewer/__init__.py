"""What a viewer session shares with both viewers, and the slide viewer itself.

The session's grant (grants.py), read by OHIF's routes, DICOMweb and the slides; the frame
renderer DICOMweb's /rendered and /thumbnail use; the ISO download of OHIF's "Download ISO"
button (download.py); the slide viewer's page (slide_page.py) and its slide routes
(session_slides.py). Every route is authorised by the viewer session cookie and limited to what
the session's context grants.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import jinja2
from aiohttp import web

from node.render import FrameRenderer
from rest.state import SERVICES
from rest.viewer import download, session_slides, slide_page
from rest.viewer.grants import GrantCache
from rest.viewer.viewer_state import GRANTS, RENDERER, TEMPLATES

TEMPLATE_ROOT = Path(__file__).resolve().parent.parent / "templates"
ROUTE_TABLES = (slide_page.routes, download.routes)

__all__ = ["ROUTE_TABLES", "setup"]


async def _renderer(app: web.Application) -> AsyncIterator[None]:
    yield
    app[RENDERER].close()


def setup(app: web.Application) -> None:
    """State and routes of the viewer session; call after SERVICES is set."""
    services = app[SERVICES]
    app[RENDERER] = FrameRenderer(services.config.data_dir / "render-cache")
    app[GRANTS] = GrantCache(services)
    app[TEMPLATES] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_ROOT),
        autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    app.cleanup_ctx.append(_renderer)
    for table in ROUTE_TABLES:
        app.add_routes(table)
    session_slides.setup(app)
