"""OHIF Viewer under /viewer/: its page, the session's app-config.js, its static files.

- `/viewer/static/<build id>/...`: the prepared build (bundle.py), the same for every session,
  compressed, cached as immutable (a new build has a new id);
- `/viewer/app-config.js`: the session's configuration (app_config.py), never cached;
- any other path under /viewer/ is one of OHIF's own routes (`/viewer/viewer?StudyInstanceUIDs=`)
  and gets the page, for a live session only; without one, the dark refusal page; while the
  studies it names are still being retrieved, or their retrieval failed, the dark waiting page
  (waiting.py); a study a searching session found on a source node is first added to its
  context and retrieved (found_opening.py), one whose retrieval failed is retrieved again.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.render import study_series
from rest.dicomweb.urls import base_url
from rest.middleware import json_error, public
from rest.ohif.app_config import app_config_script
from rest.ohif.bundle import BASE_PATH, CONFIG_PATH, PreparedApp, served_file
from rest.ohif.found_opening import open_found_studies
from rest.ohif.ohif_state import OHIF
from rest.ohif.protocols import session_protocol
from rest.ohif.waiting import failed_retrievals, reopen_failed, waiting_page, waiting_studies
from rest.refusal import NO_SESSION, refusal_page
from rest.state import SERVICES
from rest.viewer.grants import Grant
from rest.viewer.viewer_state import GRANTS

routes = web.RouteTableDef()

IMMUTABLE = "public, max-age=31536000, immutable"
# What the page may load: only the node itself. OHIF needs WebAssembly (its image codecs),
# workers and blob: URLs (decoded frames, documents), inline style attributes (React); the
# inline script of OHIF's own index.html moved into app-config.js.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; font-src 'self' data:; "
        "connect-src 'self' blob:; worker-src 'self' blob:; media-src 'self' blob:; "
        "frame-src 'self' blob:; object-src 'self' blob:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'self'"),
}


def _prepared(request: web.Request) -> PreparedApp:
    install = request.app[OHIF]
    if install.app is None:
        raise web.HTTPServiceUnavailable(reason=install.problem)
    return install.app


@routes.get(CONFIG_PATH, allow_head=False)
@public
async def config_script(request: web.Request) -> web.Response:
    app = _prepared(request)
    grant = await request.app[GRANTS].live_grant(request)
    if grant is None:
        return json_error(401, "no valid viewer session")
    protocol = await _session_protocol(request, grant)
    return web.Response(text=app_config_script(grant, app, base_url(request), protocol),
                        content_type="text/javascript", headers=PAGE_HEADERS)


async def _session_protocol(request: web.Request, grant: Grant) -> dict[str, Any] | None:
    """The database's hanging protocol for the first study the session opens (not on a
    second monitor, whose URL names its own)."""
    context = grant.context
    snapshot = context.get("hangingProtocols") or {}
    opened = [s["studyInstanceUID"] for s in context["studies"] if s["purpose"] == "open"]
    if context["monitor"] == "secondary" or not snapshot.get("protocols") or not opened:
        return None
    async with request.app[SERVICES].sessions() as session:
        series = await study_series(session, opened[0])
    return session_protocol(snapshot, opened[0], series)


@routes.get(BASE_PATH + "/static/{build}/{path:.+}", allow_head=False)
@public
async def static_file(request: web.Request) -> web.StreamResponse:
    app = _prepared(request)
    path = served_file(app, request.match_info["path"])
    if request.match_info["build"] != app.build_id or path is None:
        raise web.HTTPNotFound(reason="no such file")
    return web.FileResponse(path, headers={
        "Cache-Control": IMMUTABLE, "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff", "Cross-Origin-Resource-Policy": "same-origin"})


@routes.get(BASE_PATH, allow_head=False)
@routes.get(BASE_PATH + "/{route:.*}", allow_head=False)
@public
async def page(request: web.Request) -> web.StreamResponse:
    app = _prepared(request)
    grant = await request.app[GRANTS].live_grant(request)
    if grant is None:
        return refusal_page(401, *NO_SESSION)
    opened = request.query.get("StudyInstanceUIDs", "")
    grant = await open_found_studies(request, grant, opened)
    grant = await reopen_failed(request, grant, opened)
    if waiting_studies(grant, opened) or failed_retrievals(grant, opened):
        return waiting_page()
    return web.FileResponse(app.index_html, headers=PAGE_HEADERS)
