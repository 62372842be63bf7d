"""POST /ngv/v1/obscurl: the token that opens a folder, listed files, cloud objects or a WADO
study.

The body is checked whole and every local path is resolved through the storage mappings before
anything is stored: a bad field or a refused path is 400 naming it, and nothing was read. Then
the viewing context is committed with its import job, the token returned, and the import runs
in the background (on whichever instance claims the job, resumed by another if that one dies),
its progress written into the context for the viewer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from node.services import NodeServices
from node.sources import ImportProgress, parse_body, plan_import
from node.sources.import_jobs import ImportJobs
from node.sources.post_context import check_role, issue_context
from node.sources.request import MIME_TYPES, STORAGE_TYPES
from node.sources.slide_metadata import JSON_FIELDS, SlideMetadata
from node.sources.storage_mapping import load_mappings
from pathology.catalogue import record_slide_metadata, register_slide_file
from rest.obscurl import client_address
from rest.openapi import DOCUMENT, UID_PATTERN
from rest.state import ISSUER, SERVICES

routes = web.RouteTableDef()

IMPORTS = web.AppKey("post_imports", ImportJobs)


class PathologySlides:
    """Slides made findable by containerIdentifier, through the pathology catalogue."""

    def __init__(self, services: NodeServices) -> None:
        self.services = services

    async def register_file(self, path: Path, attributes: dict[str, str], slide: SlideMetadata
                            ) -> None:
        await register_slide_file(
            self.services.sessions, self.services.storage, slide.container_identifier, path,
            metadata=slide.non_empty_json(), study_uid=attributes.get("StudyInstanceUID", ""),
            series_uid=attributes.get("SeriesInstanceUID", ""),
            sop_uid=attributes.get("SOPInstanceUID", ""),
            accession_number=attributes.get("AccessionNumber", ""))

    async def record_metadata(self, slide: SlideMetadata) -> None:
        await record_slide_metadata(self.services.sessions, slide.container_identifier,
                                    slide.non_empty_json())


def setup(app: web.Application) -> None:
    services = app[SERVICES]
    app[IMPORTS] = ImportJobs(services, PathologySlides(services),
                              preload=app[ISSUER].schedule_preload)
    app.cleanup_ctx.append(_imports)


async def _imports(app: web.Application) -> AsyncIterator[None]:
    # Every instance takes part from the start: a job a dead instance left is resumed.
    app[IMPORTS].start()
    yield
    await app[IMPORTS].close()


@routes.post("/ngv/v1/obscurl")
async def post_obscurl(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    # read() refuses a body over http.max_body_bytes (413) before parsing it.
    open_request = parse_body(await request.read())
    await check_role(services, open_request.role)
    mappings = await load_mappings(services.sessions)
    plan = await asyncio.to_thread(plan_import, open_request, mappings, services.config)
    progress = ImportProgress()
    imports = request.app[IMPORTS]
    token, _ = await issue_context(services, plan, progress, client_address(request),
                                   imports.vault)
    imports.wake()
    return web.Response(text=token, content_type="text/plain",
                        headers={"Cache-Control": "no-store"})


def _string(description: str, max_length: int = 64, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, "description": description, **extra}


_UID = {"type": "string", "maxLength": 64, "pattern": UID_PATTERN}
_DATE = {"type": "string", "pattern": "^[0-9]{8}$"}
_INSTANCE = {
    "type": "object",
    "properties": {
        "sopInstanceUID": _UID,
        "file": _string("A host path (mapped by `python -m node mapping add`) or an object "
                        "key of the bucket.", 1024),
        "mimeType": {"type": "string", "enum": list(MIME_TYPES)},
        **{name: _string("Digital pathology.") for name in JSON_FIELDS},
    },
}
_SERIES = {
    "type": "object", "required": ["seriesInstanceUID"],
    "properties": {
        "seriesInstanceUID": _UID, "seriesDescription": _string("Series Description."),
        "modality": _string("Modality.", 16, pattern="^[A-Z0-9_ ]+$"),
        "instances": {"type": "array", "items": _INSTANCE},
    },
}
_STORAGE = {
    "type": "object", "required": ["type", "name"],
    "properties": {
        "type": {"type": "string", "enum": list(STORAGE_TYPES)},
        "name": _string("Bucket name, or a label for a WADO server.", 1024),
        "region": _string("S3/Wasabi region."),
        "accessKey": _string("S3/Wasabi access key (never logged; kept only encrypted "
                             "while its import runs).", 256),
        "secretAccessKey": _string("S3/Wasabi secret key (never logged; kept only encrypted "
                                   "while its import runs).", 256),
        "token": _string("Google service-account key, base64 JSON (never logged; kept only "
                         "encrypted while its import runs); its token_uri must be Google's.",
                         65536),
        "url": _string("WADO-RS base URL or WADO-URI URL. Loopback, link-local and this "
                       "node's own ports are refused unless [sources] allowed_hosts lists "
                       "them; redirects to another server are not followed. A user name and "
                       "password in it are sent as Basic authentication and kept like "
                       "httpHeaders.", 1024),
        "httpHeaders": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "Headers sent to the WADO server and to no other "
                                       "(never logged; kept only encrypted while its import "
                                       "runs)."},
    },
}
_BOOLEAN = {"type": "boolean"}
_OPENING = {
    "type": "object",
    "description": "Viewer options, with the meanings and defaults of GET /ngv/obscurl's "
                   "parameters, except hideDocuments.",
    "properties": {
        "collapsePreviews": {**_BOOLEAN, "default": False,
                             "description": "Show the thumbnail panel collapsed."},
        "anonymize": {**_BOOLEAN, "default": False},
        "hideSearch": {**_BOOLEAN, "default": True},
        "hideDocuments": {**_BOOLEAN, "description": "Default: false when the request lists "
                                                     "a document file itself (a PDF), "
                                                     "else true."},
        "hideLayers": {**_BOOLEAN, "default": False},
        "annotationVisibility": {"type": "string", "enum": ["ALL", "USER"], "default": "ALL"},
        "fullPreloadStudy": {
            "oneOf": [_UID, {"type": "array", "items": _UID}],
            "description": "Studies to render ahead of time once imported (of those the "
                           "request brings in)."},
    },
}
_STUDY = {
    "type": "object", "required": ["studyInstanceUID"],
    "properties": {
        "storage": _STORAGE, "patientID": _string("Patient ID."),
        "patientName": _string("Patient's Name (DICOM PN).", 194),
        "patientBirthDate": _DATE, "patientSex": {"type": "string", "enum": ["M", "F", "O"]},
        "studyInstanceUID": _UID, "accessionNumber": _string("Accession Number.", 16),
        "studyDate": _DATE, "studyTime": _string("HHMMSS[.FFFFFF]", 13),
        "studyDescription": _string("Study Description."),
        "series": {"type": "array", "items": _SERIES},
    },
}
DOCUMENT["paths"]["/ngv/v1/obscurl"] = {"post": {
    "summary": "A token that opens a folder, files, cloud objects or a WADO study.",
    "description": "Exactly one of `studies` and `folder`. Local paths are read only through "
                   "the storage mappings. The token is returned once the request is checked; "
                   "the import runs in the background and its progress is in the viewing "
                   "context. A field the node does not know is ignored (and named in its "
                   "log); a known field with a wrong type or value is a 400 naming it.",
    "security": [{"apiKey": []}],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["username", "role"],
        "properties": {
            "username": _string("Who asks."), "role": _string("An existing role."),
            "folder": {"type": "object", "required": ["path"],
                       "properties": {"path": _string("A mapped host folder.", 1024)}},
            "studies": {"type": "array", "minItems": 1, "items": _STUDY},
            "openingParameters": _OPENING,
            "OpeningParameters": {**_OPENING, "description": "The spec's other spelling of "
                                                             "openingParameters (not both)."},
        },
    }}}},
    "responses": {
        "200": {"description": "The token.", "content": {"text/plain": {"schema": {
            "type": "string", "pattern": "^[0-9a-f]{64}$"}}}},
        "400": {"description": "A field is missing or invalid, or a path is refused; `field` "
                               "names it by its path in the body.",
                "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/Error"}}}},
        "401": {"description": "Missing or wrong API key.",
                "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/Error"}}}},
        "413": {"description": "The body is larger than http.max_body_bytes."},
    },
}}
