"""Pathology slides for the viewer page, authorised by the viewer session instead of the API key.

A session may read the slides of its context's case (accNum), or the one slide its token named
(accNum + containerIdentifier), or the slides of the studies its POST request named
(rest/viewer/slide_access.py); any other slide is 403 without saying whether it exists.
Tiles, the DeepZoom descriptor, thumbnails and labels are the /webdv answers themselves; the
annotation layers are the session user's, shown by the context's annotationVisibility and
hideLayers, never by what the browser sends. The role decides the rest: `layers` to see them
(without it the session sees none, as with hideLayers), `annotations` to save or delete one.
Saving or deleting needs both, and no hideLayers: a session that does not see the user's own
layers would replace, by saving one, the shapes already in it. OpenSeadragon is served from
node_modules.

An anonymized session names slides by alias and sees no specimen, block or slide identifier
(rest/viewer/slide_names.py), and gets no label or macro image (403): a label carries the
patient's name and the barcode, a macro image shows the label.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from node.errors import InvalidInput, NotFound
from pathology.annotation_store import delete_layer, import_instances, list_layers, save_layer
from pathology.annotations import Layer, Visibility, check_name, parse_shapes, visible_layers
from pathology.catalogue import slide_metadata
from pathology.luts import lut_digest
from rest import slide_routes
from rest.json_body import read_json
from rest.middleware import Handler, json_error, public
from rest.state import SERVICES
from rest.viewer.case_banner import case_banner
from rest.viewer.grants import Grant
from rest.viewer.slide_access import SLIDE_GRANTS, SlideGrants
from rest.viewer.slide_names import SlideNames
from rest.viewer.viewer_state import GRANTS

routes = web.RouteTableDef()

PREFIX = "/ngv/slides"
VENDOR_ROOT = Path(__file__).resolve().parent.parent.parent / "node_modules"
# Only the built OpenSeadragon, never the rest of node_modules.
VENDOR_FILES = {"openseadragon": VENDOR_ROOT / "openseadragon" / "build" / "openseadragon"}
SlideResponder = Callable[[web.Request, str], Awaitable[web.Response]]


def setup(app: web.Application) -> None:
    app[SLIDE_GRANTS] = SlideGrants()
    app.add_routes(routes)


async def _grant(request: web.Request) -> Grant:
    return await request.app[GRANTS].for_request(request)


async def _require_slide(request: web.Request) -> tuple[Grant, str, SlideNames]:
    """The grant, the slide's containerIdentifier, and how the session names slides."""
    grant = await _grant(request)
    names = SlideNames(request, grant)
    slides_of = await request.app[SLIDE_GRANTS].slides(request, grant.context_pk)
    cid = names.resolve(request.match_info["slide_id"], slides_of.allowed)
    if cid is None:
        raise web.HTTPForbidden(reason="this slide is not part of the viewing session")
    return grant, cid, names


def _session_route(respond: SlideResponder, doc: str) -> Handler:
    """A /webdv answer behind the session's slide check instead of the API key."""
    async def checked(request: web.Request) -> web.StreamResponse:
        _, cid, _ = await _require_slide(request)
        return await respond(request, cid)
    checked.__doc__ = doc
    return public(checked)


@routes.get(PREFIX, allow_head=False)
@public
async def session_slides(request: web.Request) -> web.Response:
    """The tray: the context's slides with their metadata, which one to open first, and the
    case's patient (the page's banner, written again once an import has brought it)."""
    grant = await _grant(request)
    names = SlideNames(request, grant)
    granted = await request.app[SLIDE_GRANTS].slides(request, grant.context_pk)
    services = request.app[SERVICES]
    found = []
    for cid in granted.allowed:
        try:
            metadata = await slide_metadata(services.sessions, services.storage, cid)
        except NotFound:
            continue
        found.append(names.metadata(metadata.to_json()))
    first = granted.selected or (granted.allowed[0] if granted.allowed else None)
    async with services.sessions() as session:
        banner = await case_banner(session, grant, granted.banner_study)
    options = grant.context["options"]
    body: dict[str, Any] = {
        "slides": found, "selected": names.shown(first) if first else None,
        # Still importing: more slides may come, the page waits for them.
        "pending": granted.pending,
        "accessionNumbers": [] if names.anonymized else list(granted.accessions),
        "patient": banner.as_json(grant.anonymize),
        "user": grant.context["username"],
        "annotationVisibility": options.get("annotationVisibility") or "ALL",
        "hideLayers": bool(options.get("hideLayers")),
        # What the page offers: layers shown at all, and drawing (the server checks both).
        "features": {name: bool(grant.features.get(name)) for name in ("layers", "annotations")},
        "collapsePreviews": bool(options.get("collapsePreviews")),
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


@routes.get(PREFIX + "/{slide_id}", allow_head=False)
@public
async def session_slide(request: web.Request) -> web.Response:
    """Levels, size, microns per pixel (scale bar, magnifications, measurements), whether a
    colour profile applies (the toggle shows only then) and whether the lab gave the slide a
    .cube (the profile is then on from the start)."""
    _, cid, names = await _require_slide(request)
    service = request.app[slide_routes.SLIDES]
    _, slide, deepzoom = await service.describe(cid)
    shown = names.shown(cid)
    return web.json_response({
        "containerIdentifier": shown, "width": slide.info.width, "height": slide.info.height,
        "mppX": slide.info.mpp_x, "mppY": slide.info.mpp_y,
        "associatedImages": [] if names.anonymized else list(slide.info.associated_images),
        "colourManaged": await service.colour_key(cid) != "raw",
        "cube": await lut_digest(request.app[SERVICES].sessions, cid) is not None,
        "dzi": f"{PREFIX}/{shown}/dz.dzi", "tileSize": deepzoom.tile_size,
    }, headers={"Cache-Control": "no-store"})


@routes.get(PREFIX + "/{slide_id}/metadata", allow_head=False)
@public
async def session_metadata(request: web.Request) -> web.Response:
    _, cid, names = await _require_slide(request)
    services = request.app[SERVICES]
    metadata = await slide_metadata(services.sessions, services.storage, cid)
    return web.json_response(names.metadata(metadata.to_json()),
                             headers={"Cache-Control": "no-store"})


@routes.get(PREFIX + "/{slide_id}/{name:label|macro}.{fmt:jpeg|jpg|png}", allow_head=False)
@public
async def session_associated_image(request: web.Request) -> web.Response:
    _, cid, names = await _require_slide(request)
    if names.anonymized:
        return json_error(403, "slide label and macro images show the patient's name and the "
                          "slide's barcode; the session is anonymized")
    return await slide_routes.associated_response(request, cid)


routes.get(PREFIX + "/{slide_id}/dz.dzi", allow_head=False)(
    _session_route(slide_routes.descriptor_response, "The DeepZoom descriptor."))
routes.get(PREFIX + "/{slide_id}/dz_files" + slide_routes.TILE_PATH, allow_head=False)(
    _session_route(slide_routes.tile_response, "A DeepZoom tile."))
routes.get(PREFIX + "/{slide_id}/thumbnail.{fmt:jpeg|jpg|png}", allow_head=False)(
    _session_route(slide_routes.thumbnail_response, "A thumbnail."))


@routes.get(PREFIX + "/{slide_id}/layers", allow_head=False)
@public
async def session_layers(request: web.Request) -> web.Response:
    grant, cid, names = await _require_slide(request)
    options = grant.context["options"]
    visibility: Visibility = "USER" if options.get("annotationVisibility") == "USER" else "ALL"
    # hideLayers, or a role without `layers`: the session sees no layer.
    hidden = not grant.features.get("layers")
    services = request.app[SERVICES]
    await import_instances(services.sessions, services.storage, cid)
    layers = visible_layers(await list_layers(services.sessions, cid),
                            grant.context["username"], visibility, hidden)
    return web.json_response({
        "containerIdentifier": names.shown(cid), "user": grant.context["username"],
        "annotationVisibility": visibility, "hideLayers": hidden,
        "layers": [layer.to_json() for layer in layers],
    }, headers={"Cache-Control": "no-store"})


def _require_layer_changes(grant: Grant) -> None:
    """403 unless the session may save and delete its user's layers: its role allows
    `annotations` (drawing) and `layers` (seeing them), and hideLayers is off; the answer names
    what is missing."""
    if not grant.features.get("annotations"):
        raise web.HTTPForbidden(reason="the viewing session's role does not allow annotations: "
                                       "annotation layers can be neither saved nor deleted")
    if grant.context["options"].get("hideLayers"):
        raise web.HTTPForbidden(reason="annotation layers are hidden in this viewing session: "
                                       "they can be neither saved nor deleted")
    if not grant.features.get("layers"):
        raise web.HTTPForbidden(reason="the viewing session's role does not allow layers: it "
                                       "sees no annotation layer, so it can neither save nor "
                                       "delete one")


@routes.put(PREFIX + "/{slide_id}/layers/{name}")
@public
async def session_put_layer(request: web.Request) -> web.Response:
    """Saved as the session's user: the browser cannot name another."""
    grant, cid, _ = await _require_slide(request)
    _require_layer_changes(grant)
    name = check_name(request.match_info["name"], "name")
    _, slide, _ = await request.app[slide_routes.SLIDES].describe(cid)
    data = await read_json(request)
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object with shapes")
    shapes = parse_shapes(data.get("shapes"), slide.info.width, slide.info.height)
    layer = Layer(cid, grant.context["username"], name, shapes)
    await save_layer(request.app[SERVICES].sessions, layer)
    return web.json_response({"layer": layer.to_json()})


@routes.delete(PREFIX + "/{slide_id}/layers/{name}")
@public
async def session_delete_layer(request: web.Request) -> web.Response:
    grant, cid, names = await _require_slide(request)
    _require_layer_changes(grant)
    name = check_name(request.match_info["name"], "name")
    user = grant.context["username"]
    if not await delete_layer(request.app[SERVICES].sessions, cid, user, name):
        raise NotFound(f"no layer {name!r} of yours on slide {names.shown(cid)}")
    return web.json_response({"deleted": True, "name": name})


@routes.get("/ngv/vendor/{package:openseadragon}/{path:[A-Za-z0-9_./-]+}")
@public
async def vendor_file(request: web.Request) -> web.StreamResponse:
    # Resolved too: node_modules may be a link (a shared install, a container's volume).
    root = VENDOR_FILES[request.match_info["package"]].resolve()
    path = (root / request.match_info["path"]).resolve()
    if ".." in request.match_info["path"] or not path.is_relative_to(root) or not path.is_file():
        raise web.HTTPNotFound(reason="no such file")
    types = {".js": "text/javascript", ".png": "image/png", ".map": "application/json"}
    if path.suffix not in types:
        raise web.HTTPNotFound(reason="no such file")
    return web.FileResponse(path, headers={
        "Content-Type": types[path.suffix], "Cache-Control": "public, max-age=86400",
        "X-Content-Type-Options": "nosniff"})
