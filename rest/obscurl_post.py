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

from aiohttp import web

from node.services import NodeServices
from node.sources import ImportProgress, parse_body, plan_import
from node.sources.import_jobs import ImportJobs
from node.sources.post_context import check_role, issue_context
from node.sources.request_body import RequestBody
from node.sources.slide_metadata import SlideMetadata
from node.sources.storage_mapping import load_mappings
from pathology.catalogue import record_slide_metadata, register_slide_file
from rest.obscurl import client_address
from rest.openapi import DOCUMENT
from rest.openapi_schemas import COMPONENTS, openapi_components
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


# The body's schema is its models' (RequestBody and the parts it holds).
DOCUMENT["components"]["schemas"].update(openapi_components(RequestBody))
DOCUMENT["paths"]["/ngv/v1/obscurl"] = {"post": {
    "summary": "A token that opens a folder, files, cloud objects or a WADO study.",
    "description": "Exactly one of `studies` and `folder`. Local paths are read only through "
                   "the storage mappings. The token is returned once the request is checked; "
                   "the import runs in the background and its progress is in the viewing "
                   "context. A field the node does not know is ignored (and named in its "
                   "log); a known field with a wrong type or value is a 400 naming it.",
    "security": [{"apiKey": []}],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "$ref": f"{COMPONENTS}RequestBody"}}}},
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
        "409": {"description": "A study given with a patientID is one the node holds for "
                               "another PatientID.",
                "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/Error"}}}},
        "413": {"description": "The body is larger than http.max_body_bytes."},
    },
}}
