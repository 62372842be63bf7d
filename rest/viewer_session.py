"""The browser's side: redeeming a token (/ngv?q=TOKEN) for a session cookie, and the viewer's
data request (/ngv/api/context). The viewers themselves are rest/ohif (radiology) and the slide
viewer of rest/viewer (pathology).

These routes are public as far as the API key goes: the token, then the session cookie, is
what lets the browser in. A refused token gets a short dark page that says what happened and
what to do, with no detail beyond that.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.viewing import context_json, redeem, session_context
from rest.client_address import client_address, reached_over_tls
from rest.middleware import STICKY_PATTERN, json_error, public
from rest.ohif import start_url
from rest.ohif.start import with_sticky
from rest.refusal import refusal_page
from rest.state import SERVICES
from rest.viewer.slide_access import opens_slides
from rest.viewer.slide_page import VIEWER_PATH

routes = web.RouteTableDef()

COOKIE = "ngv_session"

AGAIN = "Open the study again from the calling application."
# Outcome -> status, title, what happened, what to do.
_REFUSALS = {
    "unknown": (404, "Unknown link", "This viewer link is not valid.",
                "Check that the whole link was copied, or open the study again from the "
                "calling application."),
    "used": (403, "Link already used", "This viewer link has already been used: each link "
             "opens the viewer once.", AGAIN),
    "expired": (403, "Link expired", "This viewer link has expired.", AGAIN),
    "revoked": (403, "Link revoked", "This viewer link has been revoked.",
                "Ask the calling application for a new link if you still need the study."),
}

_PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@routes.get("/ngv", allow_head=False)
@public
async def open_token(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    tokens = request.query.getall("q", [])
    token = tokens[0] if len(tokens) == 1 else ""
    result = await redeem(services, token, client_address(request))
    if result.outcome != "ok" or result.context_pk is None:
        return refusal_page(*_REFUSALS[result.outcome if result.outcome != "ok" else "unknown"])
    # A pathology case opens the slide viewer, whether its token came from GET (accNum) or
    # from POST (studies whose instances are slides, perhaps not imported yet).
    location = (VIEWER_PATH if await opens_slides(services, result.context_pk)
                else await start_url(services, result.context_pk))
    headers = {"Location": with_sticky(location, result.sticky or ""), **_PAGE_HEADERS}
    if result.sticky and STICKY_PATTERN.match(result.sticky):
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
