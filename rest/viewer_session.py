"""The browser's side: redeeming a token (/ngv?q=TOKEN) for a session cookie, and the viewer's
data request (/ngv/api/context). The viewer page itself is rest/viewer.

These routes are public as far as the API key goes: the token, then the session cookie, is
what lets the browser in. A refused token gets a short plain page with no detail beyond why.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from node.viewing import context_json, redeem, session_context
from rest.client_address import client_address, reached_over_tls
from rest.middleware import STICKY_PATTERN, json_error, public
from rest.state import SERVICES

routes = web.RouteTableDef()

COOKIE = "ngv_session"
VIEWER_PATH = "/ngv/viewer"

_REFUSALS = {
    "unknown": (404, "Unknown link", "This viewer link is not valid."),
    "used": (403, "Link already used", "This viewer link has already been used. "
             "Open the study again from the calling application."),
    "expired": (403, "Link expired", "This viewer link has expired. "
                "Open the study again from the calling application."),
    "revoked": (403, "Link revoked", "This viewer link has been revoked."),
}

_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}


def page(status: int, title: str, body_html: str) -> web.Response:
    text = (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title></head>\n<body>\n<h1>{html.escape(title)}</h1>\n{body_html}\n</body></html>\n")
    return web.Response(status=status, text=text, content_type="text/html",
                        headers=_PAGE_HEADERS)


@routes.get("/ngv", allow_head=False)
@public
async def open_token(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    tokens = request.query.getall("q", [])
    token = tokens[0] if len(tokens) == 1 else ""
    result = await redeem(services, token, client_address(request))
    if result.outcome != "ok":
        status, title, message = _REFUSALS[result.outcome]
        return page(status, title, f"<p>{html.escape(message)}</p>")
    location = VIEWER_PATH
    headers = {"Location": location, **_PAGE_HEADERS}
    if result.sticky and STICKY_PATTERN.match(result.sticky):
        # The viewer's own requests carry sticky too, so a proxy keeps them on this instance.
        headers["Location"] = f"{VIEWER_PATH}?{urlencode({'sticky': result.sticky})}"
        headers["X-Sticky"] = result.sticky
    response = web.Response(status=302, headers=headers)
    # Path "/": the session also reads the node's DICOMweb (/dicom-web), not only /ngv.
    response.set_cookie(COOKIE, result.cookie, max_age=result.max_age, path="/",
                        httponly=True, samesite="Strict", secure=_secure_cookie(request))
    return response


def _secure_cookie(request: web.Request) -> bool:
    """Secure when the browser reached the node over TLS (here or at a trusted proxy), or
    always with `[http] secure_cookies` (a TLS proxy the node cannot tell from its headers)."""
    return request.app[SERVICES].config.http.secure_cookies or reached_over_tls(request)


async def _context(request: web.Request) -> dict[str, Any] | None:
    services = request.app[SERVICES]
    context_pk = await session_context(services, request.cookies.get(COOKIE))
    if context_pk is None:
        return None
    return await context_json(services, context_pk)


@routes.get("/ngv/api/context", allow_head=False)
@public
async def viewer_context(request: web.Request) -> web.Response:
    """The viewer's data request: what to open, each study's state, every option."""
    context = await _context(request)
    if context is None:
        return json_error(401, "no valid viewer session")
    return web.json_response(context, headers={"Cache-Control": "no-store"})
