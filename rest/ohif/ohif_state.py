"""The OHIF viewer's typed application state."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from rest.ohif.bundle import PreparedApp


@dataclass
class OhifInstall:
    """The prepared OHIF build once start-up made it, or why there is none."""

    app: PreparedApp | None = None
    problem: str = "OHIF Viewer is being prepared"


OHIF = web.AppKey("ohif", OhifInstall)
