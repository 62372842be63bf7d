"""The slide viewer's page (GET /ngv/viewer) and its static files (GET /ngv/static/...).

The page is rendered on the server with what the session may see: the banner of the case's
patient (no identifiers when anonymized) and the session's user; slides.js fills the rest from
GET /ngv/slides. Only a pathology case gets it: a radiology context opened here is sent where
its token sends it (OHIF, rest/ohif/start.py), so no page of the node shows radiology outside
OHIF.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from rest.middleware import public
from rest.ohif.start import start_url, with_sticky
from rest.refusal import NO_SESSION, refusal_page
from rest.state import SERVICES
from rest.viewer.case_banner import case_banner
from rest.viewer.slide_access import SLIDE_GRANTS, opens_slides
from rest.viewer.viewer_state import GRANTS, TEMPLATES

routes = web.RouteTableDef()

STATIC_ROOT = Path(__file__).resolve().parent.parent / "static"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}
VIEWER_PATH = "/ngv/viewer"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"),
}


@routes.get(VIEWER_PATH, allow_head=False)
@public
async def slide_page(request: web.Request) -> web.StreamResponse:
    grant = await request.app[GRANTS].live_grant(request)
    if grant is None:
        return refusal_page(401, *NO_SESSION)
    services = request.app[SERVICES]
    if not await opens_slides(services, grant.context_pk):
        location = await start_url(services, grant.context_pk)
        raise web.HTTPFound(with_sticky(location, request.query.get("sticky", "")),
                            headers={"Cache-Control": "no-store"})
    slides = await request.app[SLIDE_GRANTS].slides(request, grant.context_pk)
    async with services.sessions() as session:
        banner = await case_banner(session, grant, slides.banner_study)
    text = request.app[TEMPLATES].get_template("slides.html").render(
        banner=banner, anonymize=grant.anonymize, user=grant.context["username"])
    return web.Response(text=text, content_type="text/html", headers=PAGE_HEADERS)


@routes.get("/ngv/static/{name:[A-Za-z0-9_-]+\\.(?:js|css)}")
@public
async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = STATIC_ROOT / name
    if not path.is_file():
        raise web.HTTPNotFound(reason="no such file")
    return web.FileResponse(path, headers={
        "Content-Type": STATIC_TYPES[path.suffix], "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff"})
