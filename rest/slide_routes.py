"""Slides over HTTP: description and metadata, DeepZoom descriptor and tiles, thumbnail, label
and macro images, all by containerIdentifier.

Tiles carry an ETag naming their exact bytes and are answered 304 when the browser has them.
`lut=1` asks for the slide's colour chain (ICC profile to sRGB, then its .cube); without it,
tiles are the scanner's pixels, passed through undecoded where the file allows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from node.errors import InvalidInput
from pathology.catalogue import check_container_identifier, slide_metadata, slides_of_case
from pathology.deepzoom import TileFormat
from pathology.pathology_models import ensure_schema
from pathology.slide import AssociatedName
from pathology.slide_service import SlideService, Tile
from rest.state import SERVICES

routes = web.RouteTableDef()

SLIDES = web.AppKey("slides", SlideService)

RAW_TILE_CACHE = "private, max-age=3600"
# A colour-managed tile changes when the lab replaces the table: always revalidate (the ETag
# makes that a 304 when nothing changed).
LUT_TILE_CACHE = "private, no-cache"
TILE_PATH = r"/{level:\d+}/{col:\d+}_{row:\d+}.{fmt:jpeg|jpg|png}"


def setup(app: web.Application) -> None:
    """The slide service on the app, created before the app starts, and its lifecycle."""
    services = app[SERVICES]
    app[SLIDES] = SlideService(services.sessions, services.storage)
    app.cleanup_ctx.append(_lifecycle)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    await ensure_schema(app[SERVICES].engine)
    yield
    await app[SLIDES].close()


def _slide_id(request: web.Request) -> str:
    return check_container_identifier(request.match_info["slide_id"])


def _format(value: str) -> TileFormat:
    return "png" if value == "png" else "jpeg"


def _lut_flag(request: web.Request) -> bool:
    value = request.query.get("lut", "0").lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no", ""):
        return False
    raise InvalidInput("lut must be 1 or 0", field="lut")


def _image_response(tile: Tile, cache_control: str) -> web.Response:
    headers = {"ETag": tile.etag, "Cache-Control": cache_control}
    if tile.body is None:
        return web.Response(status=304, headers=headers)
    return web.Response(body=tile.body, content_type=tile.media_type, headers=headers)


@routes.get("/webdv/slides", allow_head=False)
async def find_slides(request: web.Request) -> web.Response:
    """`containerIdentifier=` one slide's metadata; `accNum=` the slides of a case."""
    services = request.app[SERVICES]
    if "containerIdentifier" in request.query:
        cid = check_container_identifier(request.query["containerIdentifier"])
        metadata = await slide_metadata(services.sessions, services.storage, cid)
        return web.json_response({"slides": [metadata.to_json()]})
    accession = request.query.get("accNum", "").strip()
    if not accession:
        raise InvalidInput("containerIdentifier or accNum is mandatory",
                           field="containerIdentifier")
    slides = []
    for cid in await slides_of_case(services.sessions, accession):
        slides.append((await slide_metadata(services.sessions, services.storage, cid)).to_json())
    return web.json_response({"slides": slides})


@routes.get("/webdv/slides/{slide_id}", allow_head=False)
async def describe_slide(request: web.Request) -> web.Response:
    cid = _slide_id(request)
    service = request.app[SLIDES]
    source, slide, deepzoom = await service.describe(cid)
    info = slide.info
    colour_key = await service.colour_key(cid)
    body: dict[str, Any] = {
        "containerIdentifier": cid,
        "source": source.kind,
        "format": info.format,
        "width": info.width,
        "height": info.height,
        "mppX": info.mpp_x,
        "mppY": info.mpp_y,
        "levels": [
            {"width": lv.width, "height": lv.height, "downsample": lv.downsample,
             "tileWidth": lv.tile_width, "tileHeight": lv.tile_height,
             "jpegPassthrough": lv.jpeg_tiles}
            for lv in info.levels
        ],
        "associatedImages": list(info.associated_images),
        "iccProfile": info.icc_profile is not None,
        "colourManaged": colour_key != "raw",
        "deepZoom": {
            "tileSize": deepzoom.tile_size,
            "overlap": 0,
            "levels": deepzoom.level_count,
            "url": f"/webdv/slides/{cid}/dz.dzi",
        },
    }
    return web.json_response(body)


# The answers below by slide, for these API-key routes and for the viewer session's routes
# (rest/viewer/session_slides.py), which name the slide their own way.


async def descriptor_response(request: web.Request, cid: str) -> web.Response:
    _, _, deepzoom = await request.app[SLIDES].describe(cid)
    return web.Response(text=deepzoom.dzi(), content_type="application/xml",
                        headers={"Cache-Control": "private, no-cache"})


async def tile_response(request: web.Request, cid: str) -> web.Response:
    match = request.match_info
    lut = _lut_flag(request)
    tile = await request.app[SLIDES].tile(
        cid, int(match["level"]), int(match["col"]), int(match["row"]),
        _format(match["fmt"]), lut, request.headers.get("If-None-Match"))
    return _image_response(tile, LUT_TILE_CACHE if lut else RAW_TILE_CACHE)


async def thumbnail_response(request: web.Request, cid: str) -> web.Response:
    try:
        size = int(request.query.get("size", "512"))
    except ValueError:
        raise InvalidInput("size must be a whole number", field="size") from None
    tile = await request.app[SLIDES].thumbnail(cid, size, _format(request.match_info["fmt"]))
    return _image_response(tile, RAW_TILE_CACHE)


async def associated_response(request: web.Request, cid: str) -> web.Response:
    name: AssociatedName = "label" if request.match_info["name"] == "label" else "macro"
    tile = await request.app[SLIDES].associated(cid, name, _format(request.match_info["fmt"]))
    return _image_response(tile, RAW_TILE_CACHE)


@routes.get("/webdv/slides/{slide_id}/metadata", allow_head=False)
async def describe_metadata(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    metadata = await slide_metadata(services.sessions, services.storage, _slide_id(request))
    return web.json_response(metadata.to_json())


@routes.get("/webdv/slides/{slide_id}/dz.dzi", allow_head=False)
async def deepzoom_descriptor(request: web.Request) -> web.Response:
    return await descriptor_response(request, _slide_id(request))


async def deepzoom_tile(request: web.Request) -> web.Response:
    return await tile_response(request, _slide_id(request))


# The brief's path, and OpenSeadragon's own convention for a descriptor at .../dz.dzi.
routes.get("/webdv/slides/{slide_id}/dz" + TILE_PATH, allow_head=False)(deepzoom_tile)
routes.get("/webdv/slides/{slide_id}/dz_files" + TILE_PATH, allow_head=False)(deepzoom_tile)


@routes.get("/webdv/slides/{slide_id}/thumbnail.{fmt:jpeg|jpg|png}", allow_head=False)
async def slide_thumbnail(request: web.Request) -> web.Response:
    return await thumbnail_response(request, _slide_id(request))


@routes.get("/webdv/slides/{slide_id}/{name:label|macro}.{fmt:jpeg|jpg|png}", allow_head=False)
async def slide_associated_image(request: web.Request) -> web.Response:
    return await associated_response(request, _slide_id(request))
