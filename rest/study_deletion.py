"""DELETE /api/studies/{study}: delete a stored study (API key).

The study leaves every query in the request's one transaction; its files are removed in the
background (node/retention/deletion.py), so the answer is 202 with what was deleted.
"""

from __future__ import annotations

from aiohttp import web

from node.errors import InvalidInput, NotFound
from node.index.deletion_queries import Requester
from node.ingest.instance_record import is_valid_uid
from rest.client_address import client_address
from rest.state import DELETIONS

routes = web.RouteTableDef()


@routes.delete("/api/studies/{study}")
async def delete_study(request: web.Request) -> web.Response:
    study_uid = request.match_info["study"]
    if not is_valid_uid(study_uid):
        raise InvalidInput(f"study: not a valid DICOM UID: {study_uid[:80]!r}", "study")
    deleted, _ = await request.app[DELETIONS].delete(
        [study_uid], Requester("api", client_address(request)))
    if not deleted:
        raise NotFound(f"study not stored: {study_uid}")
    study = deleted[0]
    return web.json_response(
        {"deleted": study.study_uid, "instances": study.instances, "bytes": study.bytes,
         "files": "removed in the background"}, status=202)
