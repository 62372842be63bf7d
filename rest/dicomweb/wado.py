"""WADO-RS (PS3.18 10.4): instances, metadata, frames, bulk data and rendered images.

- Instances (study, series or one) as `multipart/related; type="application/dicom"`, each
  file as stored unless the client asks for Explicit VR Little Endian by name (then converted,
  decompressed if need be); `transfer-syntax=*` or none: as stored.
- Metadata as DICOM JSON from the series' metadata files (node/render/series_metadata.py), bulk data
  as BulkDataURIs on the origin the client used.
- Frames read by offset from the stored file (node/render/stored_frames.py): as stored (their
  media type, e.g. image/jpeg, or octet-stream with `transfer-syntax=*`) or native bytes.
- Rendered images and thumbnails through the viewer's renderer and its cache.

A viewer session reads within its grant: with `anonymize` it gets metadata without identifying
values, frames and rendered images (not of instances with burned-in annotation), and no whole
instance or non-pixel bulk data, which carry the identifiers in full.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian

from node.errors import InvalidInput, NotFound
from node.index.instance_queries import StoredInstanceRow, series_of_study, stored_instances
from node.index.query import Scope
from node.render import NotRenderable, RenderParams, Window, is_image
from node.render.renderer import cache_key
from node.render.series_metadata import PIXEL_DATA_TAGS, InstanceMetadata, RowsLoader
from node.render.stored_frames import FRAME_MEDIA_TYPES, NotDecodable, read_frames
from rest.dicomweb.dicom_json import PHI_TAGS
from rest.dicomweb.dicomweb_state import METADATA
from rest.dicomweb.multipart import MultipartRelated
from rest.dicomweb.negotiation import DICOM_JSON, MediaRange, accepted, not_acceptable, require_json
from rest.dicomweb.readers import Reader, reader
from rest.dicomweb.urls import BASE_PATH, base_url
from rest.middleware import json_error, public
from rest.state import SERVICES
from rest.viewer.media import extract_video, extracted_path
from rest.viewer.viewer_state import RENDERER

routes = web.RouteTableDef()

STUDY = BASE_PATH + "/studies/{study}"
SERIES = STUDY + "/series/{series}"
INSTANCE = SERIES + "/instances/{sop}"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
MAX_FRAMES_ASKED = 10_000
OCTET_STREAM = "application/octet-stream"
# MPEG-4 AVC/H.264 and HEVC/H.265 transfer syntaxes: the stream stored is an MP4 file.
MP4_SYNTAXES = frozenset(f"1.2.840.10008.1.2.4.{n}" for n in range(102, 109))
BURNED_IN = "00280301"
# Content items (Concept Name Code Sequence, Code Value, Text Value) naming a specimen's or
# its parent's identifier (DCM 121041, 111705).
CONCEPT_NAME, CODE_VALUE, TEXT_VALUE = "0040A043", "00080100", "0040A160"
IDENTIFIER_CONCEPTS = frozenset({"121041", "111705"})
NO_STORE = {"Cache-Control": "private, no-store"}
# Frames and rendered images of a stored instance never change (a replaced instance is another
# file): the browser may keep them for the session.
IMMUTABLE = {"Cache-Control": "private, max-age=86400"}


def _uid(request: web.Request, name: str) -> str | None:
    value = request.match_info.get(name)
    if value is None:
        return None
    if not _UID.match(value) or len(value) > 64:
        raise InvalidInput(f"{name}: not a UID", field=name)
    return value


async def _rows(request: web.Request, who: Reader) -> list[StoredInstanceRow]:
    """The instances the path names within the reader's scope: 403 outside a session's grant,
    404 when there are none."""
    study = _uid(request, "study")
    assert study is not None
    who.require(study)
    rows = await stored_instances(request.app[SERVICES].sessions, who.scope(), study,
                                  _uid(request, "series"), _uid(request, "sop"))
    if not rows:
        raise NotFound("no such study, series or instance")
    return rows


# -- instances -----------------------------------------------------------------------------


def _instance_syntax(ranges: list[MediaRange]) -> str:
    """"" for the stored syntax, or ExplicitVRLittleEndian; 406 for anything else."""
    for media in ranges:
        if media.media_type in ("*/*", "multipart/*") or (
                media.media_type == "multipart/related" and "type" not in media.params):
            return ""
        if media.inner_type in ("application/dicom", "application/*"):
            wanted = media.params.get("transfer-syntax", "*")
            if wanted == "*":
                return ""
            if wanted == ExplicitVRLittleEndian:
                return wanted
    raise not_acceptable(ranges)


def _explicit_little_endian(path: Any) -> bytes:
    ds = dcmread(path, force=True)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return out.getvalue()


async def retrieve(request: web.Request) -> web.StreamResponse:
    who = await reader(request)
    if who.anonymize:
        raise web.HTTPForbidden(reason="the session is anonymized: whole instances carry the "
                                "patient's identity; read metadata, frames or rendered images")
    syntax = _instance_syntax(accepted(request))
    rows = await _rows(request, who)
    paths = await request.app[SERVICES].storage.local_paths_async([r.path for r in rows])
    answer = MultipartRelated(request, "application/dicom", NO_STORE)
    for row, path in zip(rows, paths, strict=True):
        if not path.is_file():
            raise NotFound(f"instance {row.sop_uid}: its file is missing")
        if not syntax or syntax == row.transfer_syntax:
            await answer.file_part(f"application/dicom; transfer-syntax={row.transfer_syntax}",
                                   path)
        else:
            body = await asyncio.to_thread(_explicit_little_endian, path)
            await answer.part(f"application/dicom; transfer-syntax={syntax}", body)
    return await answer.finish()


# -- metadata ------------------------------------------------------------------------------


def _names_identifier(item: dict[str, Any]) -> bool:
    """A content item whose concept is a specimen's (or its parent's) identifier: a slide's
    preparation steps name the specimen, block and slide by their barcodes there."""
    concept = item.get(CONCEPT_NAME, {}).get("Value") or [{}]
    code = concept[0].get(CODE_VALUE, {}).get("Value") or [""]
    return code[0] in IDENTIFIER_CONCEPTS


def _anonymized(json: dict[str, Any]) -> dict[str, Any]:
    """Identifying values emptied at every depth: a person name anywhere (a report's observer
    in its content tree, an operator in a sequence), the listed attributes wherever they
    are nested, and the text of a content item naming a specimen's identifier."""
    out: dict[str, Any] = {}
    identifier_item = _names_identifier(json)
    for tag, body in json.items():
        vr = body.get("vr")
        if tag in PHI_TAGS or vr == "PN" or (identifier_item and tag == TEXT_VALUE):
            out[tag] = {"vr": vr}
        elif vr == "SQ" and "Value" in body:
            out[tag] = {"vr": vr, "Value": [_anonymized(item) for item in body["Value"]]}
        else:
            out[tag] = body
    return out


def _all_rows(request: web.Request, study_uid: str, series_uid: str) -> RowsLoader:
    async def load() -> list[StoredInstanceRow]:
        return await stored_instances(request.app[SERVICES].sessions, Scope(), study_uid,
                                      series_uid)
    return load


async def _metadata_of(request: web.Request, rows: list[StoredInstanceRow]
                       ) -> list[InstanceMetadata]:
    """The metadata of `rows`, through each series' metadata file."""
    wanted = {r.sop_uid for r in rows}
    found: list[InstanceMetadata] = []
    for series_uid in dict.fromkeys(r.series_uid for r in rows):
        entry = await request.app[METADATA].series(
            rows[0].study_uid, series_uid, _all_rows(request, rows[0].study_uid, series_uid))
        if entry is not None:
            found += [m for m in entry.instances if m.sop_uid in wanted]
    return found


async def metadata(request: web.Request) -> web.Response:
    """A whole series the reader sees unchanged is its metadata file's JSON as it is; anything
    else (one instance, hidden documents, anonymized) is chosen from its instances."""
    require_json(request)
    who = await reader(request)
    study, series, sop = (_uid(request, name) for name in ("study", "series", "sop"))
    assert study is not None
    who.require(study)
    sessions = request.app[SERVICES].sessions
    scope = who.scope()
    hidden = scope.without_sop_class_prefixes
    arrays: list[bytes] = []
    for series_uid in [series] if series else await series_of_study(sessions, study):
        entry = await request.app[METADATA].series(study, series_uid,
                                                   _all_rows(request, study, series_uid))
        if entry is None:
            continue
        if sop is None and not hidden and not who.anonymize:
            arrays.append(entry.body)
            continue
        kept = await _kept_of_hidden_classes(request, scope, study, series_uid,
                                             entry.instances)
        chosen = [m.json for m in entry.instances if (sop is None or m.sop_uid == sop)
                  and (not m.sop_class_uid.startswith(hidden) or m.sop_uid in kept)]
        arrays.append(orjson.dumps([_anonymized(j) if who.anonymize else j for j in chosen]))
    items = [array[1:-1] for array in arrays if array != b"[]"]
    if not items:
        raise NotFound("no such study, series or instance")
    base = base_url(request).encode("utf-8")
    body = (b"[" + b",".join(items) + b"]").replace(
        b'"BulkDataURI":"', b'"BulkDataURI":"' + base + b"/")
    return web.Response(body=body, content_type=DICOM_JSON, headers=NO_STORE)


async def _kept_of_hidden_classes(request: web.Request, scope: Scope, study_uid: str,
                                  series_uid: str, instances: list[InstanceMetadata]
                                  ) -> set[str]:
    """The series' instances of a hidden SOP class that the scope keeps all the same (by
    their origin, which only the index knows: Scope.keep_origin_prefix). An image series has
    no instance of a hidden class and costs no query."""
    hidden = scope.without_sop_class_prefixes
    if not hidden or not any(m.sop_class_uid.startswith(hidden) for m in instances):
        return set()
    rows = await stored_instances(request.app[SERVICES].sessions, scope, study_uid, series_uid)
    return {row.sop_uid for row in rows if row.sop_class_uid.startswith(hidden)}


# -- frames and bulk data ----------------------------------------------------------------------


def _frame_numbers(text: str) -> list[int]:
    parts = text.split(",")
    if len(parts) > MAX_FRAMES_ASKED or not all(p.isdigit() and len(p) < 10 for p in parts):
        raise InvalidInput("frames: a comma-separated list of frame numbers", field="frames")
    numbers = [int(p) for p in parts]
    if any(n < 1 for n in numbers):
        raise InvalidInput("frames: frame numbers start at 1", field="frames")
    return numbers


def _frame_choice(ranges: list[MediaRange], stored: str) -> tuple[bool, str]:
    """(uncompressed, the multipart `type`) for frames stored in `stored`; 406 otherwise."""
    stored_type = FRAME_MEDIA_TYPES.get(stored)
    for media in ranges:
        inner = media.inner_type
        wanted = media.params.get("transfer-syntax", "")
        if media.media_type in ("*/*", "multipart/*") or inner in ("*/*", "multipart/related"):
            return stored_type is None, stored_type or OCTET_STREAM
        if inner == OCTET_STREAM:
            if wanted == "*":
                return stored_type is None, OCTET_STREAM
            if wanted in ("", ExplicitVRLittleEndian, stored) and (
                    wanted != stored or stored_type is None):
                return True, OCTET_STREAM
        elif stored_type is not None and inner == stored_type and wanted in ("", "*", stored):
            return False, stored_type
    raise not_acceptable(ranges)


def _burned_in(metadata: InstanceMetadata) -> bool:
    """Burned In Annotation YES, as the viewer's own routes decide."""
    flag = metadata.json.get(BURNED_IN, {}).get("Value", [""])
    return str(flag[0]).strip().upper() == "YES"


async def _refuse_burned_in(request: web.Request, who: Reader, row: StoredInstanceRow) -> None:
    """An anonymized session gets no pixels of an instance with burned-in annotation (Burned
    In Annotation YES, as the viewer's own routes decide), nor of one whose header is
    unreadable."""
    if not who.anonymize:
        return
    found = await _metadata_of(request, [row])
    if not found or _burned_in(found[0]):
        raise web.HTTPForbidden(reason="this image has burned-in annotation and the session "
                                "is anonymized")


async def frames(request: web.Request) -> web.StreamResponse:
    who = await reader(request)
    numbers = _frame_numbers(request.match_info["frames"])
    row = (await _rows(request, who))[0]
    await _refuse_burned_in(request, who, row)
    uncompressed, inner = _frame_choice(accepted(request), row.transfer_syntax)
    path = await request.app[SERVICES].storage.local_path_async(row.path)
    try:
        found = await asyncio.to_thread(read_frames, path, numbers, uncompressed)
    except NotDecodable as exc:
        return json_error(406, str(exc), exc.field)
    part_type = OCTET_STREAM if inner == OCTET_STREAM else inner
    answer = MultipartRelated(request, inner, IMMUTABLE)
    for frame in found.frames:
        await answer.part(f"{part_type}; transfer-syntax={found.transfer_syntax}", frame)
    return await answer.finish()


def _element_bytes(path: Any, tag: int) -> bytes:
    ds = dcmread(path, force=True, specific_tags=[tag])
    if tag not in ds:
        raise NotFound(f"the instance has no element {tag:08X}")
    value = ds[tag].value
    if not isinstance(value, bytes):
        raise NotFound(f"element {tag:08X} is not bulk data")
    return value


async def bulkdata(request: web.Request) -> web.StreamResponse:
    who = await reader(request)
    text = request.match_info["tag"]
    if not _TAG.match(text):
        raise InvalidInput("tag: eight hexadecimal digits", field="tag")
    tag = int(text, 16)
    row = (await _rows(request, who))[0]
    if who.anonymize and tag not in PIXEL_DATA_TAGS:
        raise web.HTTPForbidden(reason="the session is anonymized: only pixel data is served "
                                "as bulk data")
    await _refuse_burned_in(request, who, row)
    path = await request.app[SERVICES].storage.local_path_async(row.path)
    value = await asyncio.to_thread(_element_bytes, path, tag)
    # Never rendered by a browser whatever it holds: bytes in a multipart, or plain octets.
    headers = {**NO_STORE, "X-Content-Type-Options": "nosniff"}
    if any(m.media_type == OCTET_STREAM for m in accepted(request)):
        return web.Response(body=value, content_type=OCTET_STREAM, headers=headers)
    answer = MultipartRelated(request, OCTET_STREAM, headers)
    await answer.part(OCTET_STREAM, value)
    return await answer.finish()


# -- rendered ------------------------------------------------------------------------------


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"{name}: not a number", field=name) from None
    if len(text) > 24:
        raise InvalidInput(f"{name}: not a number", field=name)
    return value


def _render_params(request: web.Request, frame: int, thumbnail: bool) -> RenderParams:
    """PS3.18 8.3.5: `window=center,width[,function]`, `viewport=vw,vh[,...]`, `quality`."""
    ranges = accepted(request)
    image_format = ""
    for media in ranges:
        if media.media_type in ("image/jpeg", "image/*", "*/*"):
            image_format = "jpeg"
        elif media.media_type == "image/png":
            image_format = "png"
        if image_format:
            break
    if not image_format:
        raise not_acceptable(ranges)
    window = None
    if request.query.get("window"):
        parts = request.query["window"].split(",")
        if len(parts) not in (2, 3):
            raise InvalidInput("window: center,width[,function]", field="window")
        function = (parts[2] if len(parts) == 3 else "linear").upper().replace("-", "_")
        if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
            raise InvalidInput("window: the function is linear, linear-exact or sigmoid",
                               field="window")
        window = Window(_number(parts[0], "window"), _number(parts[1], "window"),
                        function)  # type: ignore[arg-type]
    size = 128 if thumbnail else 0
    if request.query.get("viewport"):
        parts = request.query["viewport"].split(",")
        if len(parts) < 2 or not all(p.isdigit() and len(p) < 6 for p in parts[:2]):
            raise InvalidInput("viewport: vw,vh in pixels", field="viewport")
        size = min(max(int(parts[0]), int(parts[1])), 4096)
    quality = request.query.get("quality", "")
    if quality and (not quality.isdigit() or not 1 <= int(quality) <= 100):
        raise InvalidInput("quality: 1 to 100", field="quality")
    return RenderParams(frame=frame - 1, window=window, format=image_format,  # type: ignore[arg-type]
                        quality=int(quality) if quality else RenderParams.quality, size=size)


def _representative(rows: list[StoredInstanceRow]) -> StoredInstanceRow:
    """The image a study or series thumbnail shows: the middle of its first image series."""
    images = [r for r in rows if is_image(r.sop_class_uid, r.transfer_syntax)] or rows
    series = images[0].series_uid
    in_series = [r for r in images if r.series_uid == series]
    return in_series[len(in_series) // 2]


async def _video(request: web.Request, who: Reader, row: StoredInstanceRow
                 ) -> web.StreamResponse:
    """A video instance rendered (PS3.18 8.7.4: video/mp4): its MPEG-4 or HEVC stream as the
    MP4 file it was, extracted once into the render cache and sent as a file, so that a
    player's range requests (seeking) work. Anonymized sessions get a video only when it says
    it has no burned-in annotation: a video shows what the screen showed."""
    if who.anonymize:
        found = await _metadata_of(request, [row])
        flag = found[0].json.get(BURNED_IN, {}).get("Value", [""]) if found else [""]
        if str(flag[0]).strip().upper() != "NO":
            raise web.HTTPForbidden(reason="a video may show the patient's name and the "
                                    "session is anonymized")
    path = await request.app[SERVICES].storage.local_path_async(row.path)
    target = extracted_path(request.app[RENDERER].cache.root, row.sop_uid, path, ".mp4")
    await asyncio.to_thread(extract_video, path, target)
    return web.FileResponse(target, headers={**IMMUTABLE, "Content-Type": "video/mp4"})


async def _rendered(request: web.Request, thumbnail: bool) -> web.StreamResponse:
    who = await reader(request)
    rows = await _rows(request, who)
    row = rows[0] if request.match_info.get("sop") else _representative(rows)
    if (row.transfer_syntax in MP4_SYNTAXES and request.match_info.get("sop")
            and "frame" not in request.match_info and not thumbnail):
        return await _video(request, who, row)
    frame = _frame_numbers(request.match_info.get("frame", "1"))[0]
    await _refuse_burned_in(request, who, row)
    params = _render_params(request, frame, thumbnail)
    path = await request.app[SERVICES].storage.local_path_async(row.path)
    try:
        rendered = await request.app[RENDERER].render(row.sop_uid, path, params)
    except NotRenderable as exc:
        return json_error(406 if thumbnail else 422, str(exc))
    etag = f'"{cache_key(row.sop_uid, path, params)[:40]}"'
    return web.Response(body=rendered.body, content_type=rendered.media_type,
                        headers={**IMMUTABLE, "ETag": etag})


async def rendered(request: web.Request) -> web.StreamResponse:
    return await _rendered(request, thumbnail=False)


async def rendered_many(request: web.Request) -> web.StreamResponse:
    """A study's or series' images rendered (PS3.18 10.4.1.1.4): one part per image instance,
    its first frame, streamed as each is rendered; instances that cannot be rendered (reports,
    documents) and, for an anonymized session, those with burned-in annotation are left out."""
    who = await reader(request)
    rows = [r for r in await _rows(request, who) if is_image(r.sop_class_uid,
                                                             r.transfer_syntax)]
    if not rows:
        raise NotFound("no image to render")
    params = _render_params(request, 1, thumbnail=False)
    media_type = "image/png" if params.format == "png" else "image/jpeg"
    burned: set[str] = set()
    if who.anonymize:
        burned = {m.sop_uid for m in await _metadata_of(request, rows) if _burned_in(m)}
    answer = MultipartRelated(request, media_type, IMMUTABLE)
    storage = request.app[SERVICES].storage
    for row in rows:
        if row.sop_uid in burned:
            continue
        path = await storage.local_path_async(row.path)
        try:
            image = await request.app[RENDERER].render(row.sop_uid, path, params)
        except NotRenderable:
            continue
        await answer.part(image.media_type, image.body,
                          location=f"{base_url(request)}/studies/{row.study_uid}/series/"
                                   f"{row.series_uid}/instances/{row.sop_uid}/rendered")
    return await answer.finish()


async def thumbnail(request: web.Request) -> web.StreamResponse:
    return await _rendered(request, thumbnail=True)


_ROUTES: tuple[tuple[str, Callable[[web.Request], Any]], ...] = (
    (STUDY, retrieve), (SERIES, retrieve), (INSTANCE, retrieve),
    (STUDY + "/metadata", metadata), (SERIES + "/metadata", metadata),
    (INSTANCE + "/metadata", metadata),
    (INSTANCE + "/frames/{frames}", frames),
    (INSTANCE + "/bulkdata/{tag}", bulkdata),
    (STUDY + "/rendered", rendered_many), (SERIES + "/rendered", rendered_many),
    (INSTANCE + "/rendered", rendered),
    (INSTANCE + "/frames/{frame}/rendered", rendered),
    (STUDY + "/thumbnail", thumbnail), (SERIES + "/thumbnail", thumbnail),
    (INSTANCE + "/thumbnail", thumbnail), (INSTANCE + "/frames/{frame}/thumbnail", thumbnail),
)

for _path, _handler in _ROUTES:
    routes.get(_path, allow_head=False)(public(_handler))
