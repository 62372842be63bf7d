"""The radiology viewer: OHIF Viewer v3, prebuilt from npm, served under /viewer/ and reading
the node's DICOMweb with the viewer session's cookie.

The build is prepared once (bundle.py) when the app starts; each session's page gets an
app-config.js the node generates from its viewing context (app_config.py).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from rest.ohif.bundle import BASE_PATH, OhifMissing, PreparedApp, prepare
from rest.ohif.ohif_state import OHIF, OhifInstall
from rest.ohif.patient_routes import routes as patient_routes
from rest.ohif.routes import routes
from rest.ohif.start import start_url
from rest.ohif.waiting import routes as waiting_routes

__all__ = ["BASE_PATH", "OHIF", "PreparedApp", "setup", "start_url"]

log = logging.getLogger(__name__)


async def _prepare(app: web.Application) -> None:
    install = app[OHIF]
    try:
        install.app = await asyncio.to_thread(prepare)
    except (OhifMissing, OSError) as exc:
        install.problem = f"the radiology viewer is not available: {exc}"
        log.warning("%s", install.problem)


def setup(app: web.Application) -> None:
    """State and routes of the OHIF viewer; the build is prepared at start-up."""
    app[OHIF] = OhifInstall()
    app.on_startup.append(_prepare)
    # Before OHIF's page, whose route takes every other path under /viewer/.
    app.add_routes(waiting_routes)
    app.add_routes(patient_routes)
    app.add_routes(routes)
