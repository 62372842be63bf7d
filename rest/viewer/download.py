"""GET /ngv/api/studies/{study}/iso: the "download study as ISO" button, for the session.

The same medium as GET /webdv/getIso, authorised by the viewer session instead of the API
key: the role must allow downloads and the study must belong to the session. Anonymized
sessions cannot download (the medium carries the patient's data by definition).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from dicomdir.medium import build_medium, medium_options
from dicomdir.profiles import AUTO
from dicomdir.selection import gather_studies
from rest import iso_route
from rest.middleware import public
from rest.state import SERVICES
from rest.viewer.viewer_state import GRANTS

routes = web.RouteTableDef()


@routes.get("/ngv/api/studies/{study}/iso")
@public
async def study_iso(request: web.Request) -> web.StreamResponse:
    grant = await request.app[GRANTS].for_request(request)
    study_uid = request.match_info["study"]
    grant.require(study_uid)
    grant.require_feature("download")
    services = request.app[SERVICES]
    limit = services.config.media.max_iso_bytes
    selection = await gather_studies(services, [study_uid])
    if selection.stored_size > limit:
        return iso_route._too_large(selection.stored_size, limit)
    medium = await asyncio.to_thread(build_medium, selection,
                                     medium_options(services.config, AUTO))
    try:
        if medium.image.size > limit:
            return iso_route._too_large(medium.image.size, limit)
        return await iso_route._stream(request, medium)
    finally:
        await asyncio.to_thread(medium.close)
