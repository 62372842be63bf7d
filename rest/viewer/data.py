"""The viewer page's JSON: the studies it may open and each study's series.

GET /ngv/api/studies: the history panel (the context's studies with their retrieval state and
instance counts, then their patients' other local studies), each study with its patient's
session key, and each patient's banner; polled while studies arrive.
GET /ngv/api/studies/{study}/series: series and instances in display order, each instance's
kind (image, video, pdf, sr, slide, other), and the hanging protocol's layout.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.render import THUMBNAIL, StoredSeries, content_kind, study_series
from rest.middleware import public
from rest.state import SERVICES
from rest.viewer.layout import layout
from rest.viewer.patient_studies import study_listing
from rest.viewer.viewer_state import GRANTS

routes = web.RouteTableDef()

NO_STORE = {"Cache-Control": "no-store"}
THUMBNAIL_QUERY = f"format={THUMBNAIL.format}&size={THUMBNAIL.size}"


@routes.get("/ngv/api/studies")
@public
async def studies(request: web.Request) -> web.Response:
    grant = await request.app[GRANTS].for_request(request, fresh=True)
    async with request.app[SERVICES].sessions() as session:
        listing = await study_listing(session, grant)
    return web.json_response({"monitor": grant.context["monitor"],
                              "display": grant.context["display"],
                              **listing.as_json(grant.anonymize)}, headers=NO_STORE)


def _series_json(series: StoredSeries) -> dict[str, Any]:
    instances = [{"sopInstanceUID": i.sop_uid, "number": i.instance_number,
                  "frames": i.frames, "kind": content_kind(i.sop_class_uid, i.transfer_syntax)}
                 for i in series.instances]
    kinds = [i["kind"] for i in instances]
    kind = "image" if "image" in kinds else (kinds[0] if kinds else "other")
    first_image = next((i for i in instances if i["kind"] == "image"), None)
    return {"seriesInstanceUID": series.series_uid, "modality": series.modality,
            "number": series.number, "description": series.description,
            "bodyPart": series.body_part, "kind": kind, "instances": instances,
            "thumbnail": first_image["sopInstanceUID"] if first_image else None}


@routes.get("/ngv/api/studies/{study}/series")
@public
async def series(request: web.Request) -> web.Response:
    study_uid = request.match_info["study"]
    grant = await request.app[GRANTS].for_request(request)
    grant.require(study_uid)
    async with request.app[SERVICES].sessions() as session:
        found = await study_series(session, study_uid)
    state = next((s["state"] for s in grant.context["studies"]
                  if s["studyInstanceUID"] == study_uid), "available")
    return web.json_response({
        "studyInstanceUID": study_uid, "state": state,
        "series": [_series_json(s) for s in found],
        "layout": layout(grant.context.get("hangingProtocols") or {}, found),
        "thumbnailQuery": THUMBNAIL_QUERY,
    }, headers=NO_STORE)
