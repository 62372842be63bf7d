"""The viewer page (GET /ngv/viewer) and its static files (GET /ngv/static/...).

The page is rendered on the server with what the session may see: the banner of the patient
it opens with (no identifiers when anonymized) and that patient's studies, the panels its
features allow (a hidden feature's markup is absent, not merely hidden), and every patient and
study of the session as JSON for the page's scripts, which switch the banner with the study.
A pathology case gets the same page in slide mode: the slide viewer (slides.js) instead of the
radiology tools and image grid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import web

from node.render import THUMBNAIL
from rest.middleware import public
from rest.state import SERVICES
from rest.viewer.grants import Grant
from rest.viewer.patient_studies import StudyListing, study_listing
from rest.viewer.slide_access import opens_slides
from rest.viewer.viewer_state import GRANTS, TEMPLATES

routes = web.RouteTableDef()

STATIC_ROOT = Path(__file__).resolve().parent.parent / "static"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
VIEWER_PATH = "/ngv/viewer"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "media-src 'self'; connect-src 'self'; frame-src 'self'; object-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"),
}

PRESETS = {
    "CT": [["Soft tissue", 40, 400], ["Lung", -600, 1500], ["Bone", 400, 1800],
           ["Brain", 40, 80], ["Liver", 60, 160]],
    "default": [],
}


def _page_config(grant: Grant, listing: StudyListing, sticky: str, slides: bool
                 ) -> dict[str, Any]:
    context = grant.context
    return {
        # A pathology case: the slide viewer takes the image area, the radiology tools stay
        # hidden and no study is opened as images.
        "slides": slides,
        "monitor": context["monitor"], "display": context["display"],
        "features": grant.features, "anonymize": grant.anonymize,
        "options": {"collapsePreviews": bool(context["options"].get("collapsePreviews")),
                    "hideDocuments": bool(context["options"].get("hideDocuments", True)),
                    "annotationVisibility": context["options"].get("annotationVisibility")},
        **listing.as_json(grant.anonymize), "patient": listing.current, "presets": PRESETS,
        "thumbnailQuery": f"format={THUMBNAIL.format}&size={THUMBNAIL.size}",
        "sticky": sticky,
    }


@routes.get(VIEWER_PATH, allow_head=False)
@public
async def viewer_page(request: web.Request) -> web.Response:
    templates = request.app[TEMPLATES]
    try:
        grant = await request.app[GRANTS].for_request(request, fresh=True)
    except web.HTTPUnauthorized:
        text = templates.get_template("refused.html").render(
            title="No viewer session",
            message="Open the viewer from the calling application.")
        return web.Response(status=401, text=text, content_type="text/html",
                            headers=PAGE_HEADERS)
    async with request.app[SERVICES].sessions() as session:
        listing = await study_listing(session, grant)
    sticky = request.query.get("sticky", "")
    slides = await opens_slides(request.app[SERVICES], grant.context_pk)
    config = _page_config(grant, listing, sticky if sticky.isprintable() else "", slides)
    text = templates.get_template("viewer.html").render(
        banner=listing.banner(), patient_count=len(listing.patients),
        anonymize=grant.anonymize, features=grant.features, monitor=grant.context["monitor"],
        studies=listing.studies_of(listing.current), user=grant.context["username"],
        config_json=json.dumps(config).replace("</", "<\\/"),
        collapse=config["options"]["collapsePreviews"], slides=slides)
    return web.Response(text=text, content_type="text/html", headers=PAGE_HEADERS)


@routes.get("/ngv/static/{name:[A-Za-z0-9_-]+\\.(?:js|css|svg)}")
@public
async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = STATIC_ROOT / name
    if not path.is_file():
        raise web.HTTPNotFound(reason="no such file")
    return web.FileResponse(path, headers={
        "Content-Type": STATIC_TYPES[path.suffix], "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff"})
