"""GET /ngv/api/studies/{study}/iso: the "download study as ISO" button, for the session.

The same medium as GET /webdv/getIso, authorised by the viewer session instead of the API
key: the role must allow downloads and the study must belong to the session. Anonymized
sessions cannot download (the medium carries the patient's data by definition); a session
that hides documents gets a medium without them (also without the measurements sessions saved
as SR, which DICOMweb shows it: the medium's selection does not know an instance's
origin).
"""

from __future__ import annotations

from aiohttp import web

from dicomdir.profiles import AUTO
from node.render.sop_classes import DOCUMENT_PREFIXES
from rest import iso_route
from rest.middleware import public
from rest.viewer.viewer_state import GRANTS

routes = web.RouteTableDef()


@routes.get("/ngv/api/studies/{study}/iso")
@public
async def study_iso(request: web.Request) -> web.StreamResponse:
    study_uid = request.match_info["study"]
    grant = await request.app[GRANTS].for_study(request, study_uid)
    grant.require(study_uid)
    grant.require_feature("download")
    hidden = () if grant.features.get("documents") else DOCUMENT_PREFIXES
    return await iso_route.send_medium(request, [study_uid], AUTO, hidden)
