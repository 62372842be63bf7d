"""Rendered frames: GET /ngv/api/studies/{study}/instances/{sop}/frames/{frame}.

Query: `wc` and `ww` (window centre and width, both or neither; default the file's own VOI),
`voi` (LINEAR, LINEAR_EXACT or SIGMOID with wc/ww), `format` (png default, or jpeg),
`quality` (JPEG, 1-100), `size` (largest side in pixels, 1-4096). Frames count from 1.

The answer carries an ETag (the cache key: instance file and parameters) and may be kept by
the browser; `X-Window` says which window was applied, so that the page can start a
window/level drag from it.
"""

from __future__ import annotations

from aiohttp import web

from node.errors import InvalidInput
from node.render import NotRenderable, RenderParams, Window, content_kind
from node.render.render_params import VoiFunction
from node.render.renderer import cache_key
from rest.middleware import json_error, public
from rest.viewer.viewer_state import GRANTS, INSTANCES, RENDERER

routes = web.RouteTableDef()

FRAME_PATH = "/ngv/api/studies/{study}/instances/{sop}/frames/{frame}"
# Rendered from the same file with the same parameters, the bytes never change.
CACHE_CONTROL = "private, max-age=86400"
MAX_NUMBER_TEXT = 24


def _number(request: web.Request, name: str) -> float | None:
    text = request.query.get(name)
    if text is None or text == "":
        return None
    if len(text) > MAX_NUMBER_TEXT:
        raise InvalidInput(f"{name}: not a number", name)
    try:
        return float(text)
    except ValueError:
        raise InvalidInput(f"{name}: not a number", name) from None


def _integer(text: str, name: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise InvalidInput(f"{name}: expected a positive whole number", name)
    return int(text)


def render_params(request: web.Request) -> RenderParams:
    frame = _integer(request.match_info["frame"], "frame")
    if frame < 1:
        raise InvalidInput("frame numbers start at 1", "frame")
    centre, width = _number(request, "wc"), _number(request, "ww")
    if (centre is None) != (width is None):
        raise InvalidInput("wc and ww go together", "ww" if width is None else "wc")
    function = request.query.get("voi", "LINEAR").upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        raise InvalidInput("voi must be LINEAR, LINEAR_EXACT or SIGMOID", "voi")
    voi: VoiFunction = function  # type: ignore[assignment]
    window = None if centre is None or width is None else Window(centre, width, voi)
    image_format = request.query.get("format", "png").lower()
    if image_format == "jpg":
        image_format = "jpeg"
    quality = request.query.get("quality")
    size = request.query.get("size")
    return RenderParams(
        frame=frame - 1, window=window, format=image_format,  # type: ignore[arg-type]
        quality=_integer(quality, "quality") if quality else RenderParams.quality,
        size=_integer(size, "size") if size else 0,
    )


@routes.get(FRAME_PATH)
@public
async def rendered_frame(request: web.Request) -> web.StreamResponse:
    grant = await request.app[GRANTS].for_request(request)
    study_uid, sop_uid = request.match_info["study"], request.match_info["sop"]
    grant.require(study_uid)
    params = render_params(request)
    instance = await request.app[INSTANCES].get(study_uid, sop_uid)
    if content_kind(instance.sop_class_uid, instance.transfer_syntax) not in ("image", "slide"):
        return json_error(422, "this instance is not an image; open it as a document or video")
    if grant.anonymize and await request.app[INSTANCES].burned_in(instance):
        return json_error(403, "this image has burned-in annotation and the session is "
                          "anonymized")
    etag = f'"{cache_key(sop_uid, instance.path, params)[:40]}"'
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    try:
        rendered = await request.app[RENDERER].render(sop_uid, instance.path, params)
    except NotRenderable as exc:
        return json_error(422, str(exc))
    if rendered.window is not None:
        headers["X-Window"] = f"{rendered.window.center:.10g} {rendered.window.width:.10g}"
    headers["X-Frames"] = str(instance.frames)
    headers["X-Render-Cache"] = "hit" if rendered.cached else "miss"
    return web.Response(body=rendered.body, content_type=rendered.media_type,
                        headers=headers)
