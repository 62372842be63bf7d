"""Non-image content of a study: video files, PDF documents and Structured Reports.

GET .../instances/{sop}/video     the stored MP4 (range requests answered), for a <video>
GET .../instances/{sop}/document  the encapsulated PDF, shown inline when it is one
GET .../instances/{sop}/report    an SR as JSON lines of readable text
Documents and reports need the documents feature (role permission, hideDocuments=false).
An anonymized session gets no PDF or video whose pixels or pages may carry the patient's
name (Burned In Annotation not NO): they are refused with 403.

An Encapsulated PDF instance is whatever its sender wrote: MIMETypeOfEncapsulatedDocument
`text/html` and a script would run in the viewer's origin if it were served as it says. Only a
document that says application/pdf and begins with `%PDF-` is served inline (as
application/pdf); anything else is an `attachment` of type application/octet-stream. Both carry
nosniff and a Content-Security-Policy that sandboxes the document itself.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from pydicom import dcmread

from node.render import content_kind
from rest.middleware import DOCUMENT_POLICY, json_error, public
from rest.viewer.grants import Grant
from rest.viewer.instances import StoredInstance
from rest.viewer.media import extract_document, extract_video, extracted_path
from rest.viewer.report import report_lines
from rest.viewer.viewer_state import GRANTS, INSTANCES, RENDERER

routes = web.RouteTableDef()

BASE = "/ngv/api/studies/{study}/instances/{sop}"
PRIVATE = {"Cache-Control": "private, max-age=3600"}
PDF_TYPE = "application/pdf"
PDF_MAGIC = b"%PDF-"
VIDEO_TYPES = {"1.2.840.10008.1.2.4.100": "video/mpeg", "1.2.840.10008.1.2.4.101": "video/mpeg"}


async def _instance(request: web.Request, kind: str) -> tuple[Grant, StoredInstance]:
    grant = await request.app[GRANTS].for_request(request)
    study_uid = request.match_info["study"]
    grant.require(study_uid)
    instance = await request.app[INSTANCES].get(study_uid, request.match_info["sop"])
    if content_kind(instance.sop_class_uid, instance.transfer_syntax) != kind:
        raise web.HTTPUnprocessableEntity(reason=f"this instance is not a {kind}")
    return grant, instance


async def _withheld(grant: Grant, instance: StoredInstance) -> bool:
    if not grant.anonymize:
        return False
    return not await asyncio.to_thread(_says_no_burned_in, instance)


def _says_no_burned_in(instance: StoredInstance) -> bool:
    ds = dcmread(instance.path, stop_before_pixels=True, specific_tags=["BurnedInAnnotation"])
    return str(ds.get("BurnedInAnnotation", "")).strip().upper() == "NO"


@routes.get(BASE + "/video")
@public
async def video(request: web.Request) -> web.StreamResponse:
    grant, instance = await _instance(request, "video")
    if await _withheld(grant, instance):
        return json_error(403, "videos may show the patient's name; the session is anonymized")
    root = request.app[RENDERER].cache.root
    target = extracted_path(root, instance.sop_uid, instance.path, ".mp4")
    await asyncio.to_thread(extract_video, instance.path, target)
    media_type = VIDEO_TYPES.get(instance.transfer_syntax, "video/mp4")
    return web.FileResponse(target, headers={**PRIVATE, "Content-Type": media_type,
                                             "Content-Disposition": 'inline; filename="video.mp4"'})


@routes.get(BASE + "/document")
@public
async def document(request: web.Request) -> web.StreamResponse:
    grant, instance = await _instance(request, "pdf")
    grant.require_feature("documents")
    if await _withheld(grant, instance):
        return json_error(403, "documents may show the patient's name; the session is "
                          "anonymized")
    root = request.app[RENDERER].cache.root
    target = extracted_path(root, instance.sop_uid, instance.path, ".pdf")
    served_as = await asyncio.to_thread(_extract_checked, instance.path, target)
    return web.FileResponse(target, headers={
        **PRIVATE, **served_as, "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": DOCUMENT_POLICY})


def _extract_checked(source: Path, target: Path) -> dict[str, str]:
    """The document extracted; its Content-Type and Content-Disposition: inline only for what
    says it is a PDF and begins like one."""
    mime = extract_document(source, target)
    with target.open("rb") as extracted:
        magic = extracted.read(len(PDF_MAGIC))
    if mime.partition(";")[0].strip().lower() == PDF_TYPE and magic == PDF_MAGIC:
        return {"Content-Type": PDF_TYPE, "Content-Disposition": 'inline; filename="document.pdf"'}
    return {"Content-Type": "application/octet-stream",
            "Content-Disposition": 'attachment; filename="document.bin"'}


@routes.get(BASE + "/report")
@public
async def report(request: web.Request) -> web.Response:
    grant, instance = await _instance(request, "sr")
    grant.require_feature("documents")
    ds = await asyncio.to_thread(dcmread, instance.path)
    title, lines = report_lines(ds, grant.anonymize)
    return web.json_response({"title": title, "lines": [line.as_json() for line in lines]},
                             headers=PRIVATE)
