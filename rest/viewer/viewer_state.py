"""The viewer session's typed application state."""

from __future__ import annotations

import jinja2
from aiohttp import web

from node.render import FrameRenderer
from rest.viewer.grants import GrantCache

RENDERER = web.AppKey("viewer_renderer", FrameRenderer)
GRANTS = web.AppKey("viewer_grants", GrantCache)
TEMPLATES = web.AppKey("viewer_templates", jinja2.Environment)
