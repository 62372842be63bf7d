"""CORS for the DICOMweb routes: off unless `[dicomweb] cors_origins` names the origins of
viewers served elsewhere.

Such a viewer sends the API key (the session cookie is SameSite=Strict and never crosses
sites), so preflights allow the Authorization, Accept and Content-Type headers; only the listed
origins are ever echoed, never `*`.
"""

from __future__ import annotations

from aiohttp import web

from rest.dicomweb.urls import BASE_PATH
from rest.middleware import Handler
from rest.state import SERVICES

ALLOWED_HEADERS = "Authorization, Accept, Content-Type"
EXPOSED_HEADERS = "Content-Type, Content-Location, Warning"
PREFLIGHT_SECONDS = "600"


def _allowed_origin(request: web.Request) -> str:
    origin = request.headers.get("Origin", "")
    if origin and request.path.startswith(BASE_PATH + "/") and (
            origin in request.app[SERVICES].config.dicomweb.cors_origins):
        return origin
    return ""


@web.middleware
async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer a DICOMweb preflight (OPTIONS) for a listed origin; refuse it for any other."""
    if (request.method != "OPTIONS" or not request.path.startswith(BASE_PATH + "/")
            or "Access-Control-Request-Method" not in request.headers):
        return await handler(request)
    origin = _allowed_origin(request)
    if not origin:
        raise web.HTTPForbidden(reason="this origin may not call DICOMweb from a browser")
    return web.Response(status=204, headers={
        "Access-Control-Allow-Origin": origin, "Vary": "Origin",
        "Access-Control-Allow-Methods": "GET, POST",
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Max-Age": PREFLIGHT_SECONDS})


async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The CORS headers of an answer to a listed origin, set before any byte is sent (streamed
    multipart answers included)."""
    origin = _allowed_origin(request)
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        response.headers["Vary"] = "Origin"
