"""Annotation layers over HTTP: a user's named layers per slide, listed with the viewing
options' visibility (annotationVisibility=USER|ALL, hideLayers), saved, deleted, and exported as
DICOM Microscopy Bulk Simple Annotations into the node's storage.

`username` names the user: these routes sit behind the API key like the rest of /webdv, for the
calling application (or the viewer's own backend) to act for a user.
"""

from __future__ import annotations

from typing import Any, cast

from aiohttp import web

from node.errors import InvalidInput, NotFound
from pathology.annotation_store import (
    delete_layer,
    export_layers,
    import_instances,
    list_layers,
    save_layer,
)
from pathology.annotations import Layer, Visibility, check_name, parse_shapes, visible_layers
from pathology.catalogue import check_container_identifier
from rest.json_body import read_json
from rest.slide_routes import SLIDES
from rest.state import SERVICES

routes = web.RouteTableDef()


def _slide_id(request: web.Request) -> str:
    return check_container_identifier(request.match_info["slide_id"])


def _user(request: web.Request) -> str:
    return check_name(request.query.get("username"), "username")


def _visibility(request: web.Request) -> Visibility:
    value = request.query.get("annotationVisibility", "ALL").upper()
    if value not in ("ALL", "USER"):
        raise InvalidInput("annotationVisibility must be ALL or USER",
                           field="annotationVisibility")
    return cast("Visibility", value)


def _hide_layers(request: web.Request) -> bool:
    value = request.query.get("hideLayers", "false").lower()
    if value not in ("true", "false"):
        raise InvalidInput("hideLayers must be true or false", field="hideLayers")
    return value == "true"


@routes.get("/webdv/slides/{slide_id}/layers", allow_head=False)
async def get_layers(request: web.Request) -> web.Response:
    cid = _slide_id(request)
    user = _user(request)
    visibility = _visibility(request)
    hidden = _hide_layers(request)
    services = request.app[SERVICES]
    await request.app[SLIDES].describe(cid)
    await import_instances(services.sessions, services.storage, cid)
    layers = visible_layers(await list_layers(services.sessions, cid), user, visibility, hidden)
    body: dict[str, Any] = {
        "containerIdentifier": cid,
        "annotationVisibility": visibility,
        "hideLayers": hidden,
        "layers": [layer.to_json() for layer in layers],
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


@routes.put("/webdv/slides/{slide_id}/layers/{name}")
async def put_layer(request: web.Request) -> web.Response:
    cid = _slide_id(request)
    user = _user(request)
    name = check_name(request.match_info["name"], "name")
    _, slide, _ = await request.app[SLIDES].describe(cid)
    data = await read_json(request)
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object with shapes")
    shapes = parse_shapes(data.get("shapes"), slide.info.width, slide.info.height)
    layer = Layer(cid, user, name, shapes)
    await save_layer(request.app[SERVICES].sessions, layer)
    return web.json_response({"layer": layer.to_json()})


@routes.delete("/webdv/slides/{slide_id}/layers/{name}")
async def remove_layer(request: web.Request) -> web.Response:
    cid = _slide_id(request)
    user = _user(request)
    name = check_name(request.match_info["name"], "name")
    if not await delete_layer(request.app[SERVICES].sessions, cid, user, name):
        raise NotFound(f"{user} has no layer {name!r} on slide {cid}")
    return web.json_response({"deleted": True, "name": name})


@routes.post("/webdv/slides/{slide_id}/layers/export")
async def export(request: web.Request) -> web.Response:
    """Every user's layers (or only `username`'s) as annotation instances in storage."""
    cid = _slide_id(request)
    owners = [_user(request)] if "username" in request.query else None
    services = request.app[SERVICES]
    uids = await export_layers(services.sessions, services.storage, services.ingestor, cid,
                               owners)
    return web.json_response({"containerIdentifier": cid, "sopInstanceUIDs": uids})
