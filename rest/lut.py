"""The colour profile API: one .cube per slide, POSTed as the raw body or as a multipart file.

Statuses as the spec gives them: 200 stored; 400 without containerIdentifier, and for an empty,
malformed or oversized .cube (the message names the line at fault); 409 when the slide already
has one; and 404 when no slide has that containerIdentifier (a table is stored only for a slide
the node has: send it once the slide is imported). GET returns the stored bytes; DELETE removes
them so that a corrected table can be sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import BodyPartReader, web

from node.errors import NotFound
from pathology.catalogue import check_container_identifier, slide_exists
from pathology.cube import MAX_BYTES, CubeError
from pathology.luts import delete_lut, load_lut, store_lut
from rest.slide_routes import SLIDES
from rest.state import SERVICES

routes = web.RouteTableDef()

CHUNK = 256 * 1024
# Multipart fields taken as the file when no part carries a filename.
FILE_FIELDS = ("file", "cube", "lut")


def _container(request: web.Request) -> str:
    values = request.query.getall("containerIdentifier", [])
    return check_container_identifier(values[0] if len(values) == 1 else None)


@routes.post("/webdv/lut")
async def upload_lut(request: web.Request) -> web.Response:
    cid = _container(request)
    if request.content_type.startswith("multipart/"):
        data = await _multipart_file(request)
    else:
        data = await _read_limited(request.content.read)
    # After the body is read: a malformed multipart body stays the 400 it is.
    if not await slide_exists(request.app[SERVICES].sessions, cid):
        raise NotFound(f"no slide with containerIdentifier {cid}")
    cube = await store_lut(request.app[SERVICES].sessions, cid, data)
    request.app[SLIDES].forget_lut(cid)
    return web.json_response({"containerIdentifier": cid, "title": cube.title, "size": cube.size})


@routes.get("/webdv/lut", allow_head=False)
async def download_lut(request: web.Request) -> web.Response:
    cid = _container(request)
    stored = await load_lut(request.app[SERVICES].sessions, cid)
    if stored is None:
        raise NotFound(f"no .cube file for slide {cid}")
    return web.Response(
        body=stored.cube, content_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{_filename(cid)}.cube"',
                 "ETag": f'"{stored.digest[:32]}"', "Cache-Control": "private, no-cache"})


@routes.delete("/webdv/lut")
async def remove_lut(request: web.Request) -> web.Response:
    cid = _container(request)
    if not await delete_lut(request.app[SERVICES].sessions, cid):
        raise NotFound(f"no .cube file for slide {cid}")
    request.app[SLIDES].forget_lut(cid)
    return web.json_response({"containerIdentifier": cid, "deleted": True})


async def _multipart_file(request: web.Request) -> bytes:
    """The first part with a filename, else the first part named like a file field."""
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            raise CubeError("the multipart body has no file part (send the .cube as a file)")
        if not isinstance(part, BodyPartReader):
            continue
        if part.filename is not None or part.name in FILE_FIELDS:
            return await _read_limited(part.read_chunk)
        await part.release()


async def _read_limited(read: Callable[[int], Awaitable[bytes]]) -> bytes:
    """The body up to MAX_BYTES: the app's request size limit does not apply to a streamed
    body, and a larger .cube is refused without reading the rest."""
    chunks = []
    total = 0
    while True:
        chunk = await read(CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > MAX_BYTES:
            raise CubeError(f"the .cube file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _filename(cid: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in cid)
