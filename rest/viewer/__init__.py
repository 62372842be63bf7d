"""The web viewer a redeemed token opens: its page, its data routes, its rendered frames.

Every route is authorised by the viewer session cookie and limited to the session's studies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import jinja2
from aiohttp import web

from node.render import FrameRenderer
from rest.state import SERVICES
from rest.viewer import data, documents, download, frames, search, session_slides, slide_page
from rest.viewer.grants import GrantCache
from rest.viewer.instances import InstanceLookup
from rest.viewer.viewer_state import GRANTS, INSTANCES, RENDERER, TEMPLATES

TEMPLATE_ROOT = Path(__file__).resolve().parent.parent / "templates"
ROUTE_TABLES = (slide_page.routes, data.routes, frames.routes, documents.routes, search.routes,
                download.routes)

__all__ = ["ROUTE_TABLES", "setup"]


async def _renderer(app: web.Application) -> AsyncIterator[None]:
    yield
    app[RENDERER].close()


def setup(app: web.Application) -> None:
    """State and routes of the viewer; call after SERVICES is set."""
    services = app[SERVICES]
    app[RENDERER] = FrameRenderer(services.config.data_dir / "render-cache")
    app[GRANTS] = GrantCache(services)
    app[INSTANCES] = InstanceLookup(services)
    app[TEMPLATES] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_ROOT),
        autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    app.cleanup_ctx.append(_renderer)
    for table in ROUTE_TABLES:
        app.add_routes(table)
    session_slides.setup(app)
