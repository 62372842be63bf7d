"""The aiohttp application factory."""

from __future__ import annotations

from aiohttp import web

from node.services import NodeServices

SERVICES = web.AppKey("services", NodeServices)
API_KEY = web.AppKey("api_key", str)


def create_app(services: NodeServices, api_key: str) -> web.Application:
    app = web.Application(client_max_size=services.config.http.max_body_bytes)
    app[SERVICES] = services
    app[API_KEY] = api_key
    return app
