"""GET /ngv/multimonitor-api: tokens for one or two monitors, for one patient.

The spec spells the study parameter `studyIntanceUID` in its table and example and
`studyInstanceUid` in its prose; all spellings are accepted, together with the correct
`studyInstanceUID`, and the OpenAPI document shows the table's first.

Each URL carries the request's `sticky` too, so that a proxy routing on it sends the token's
redemption to the instance that the viewer's later requests reach.
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from node.errors import InvalidInput
from node.viewing import IssueRequest
from node.viewing.study_resolution import StudyRequest
from rest.client_address import client_address
from rest.obscurl import ACCESSION_MAX, LO_MAX, viewing_options
from rest.params import QueryParams
from rest.state import ISSUER

routes = web.RouteTableDef()

STUDY_PARAMETER = "studyIntanceUID"
STUDY_ALIASES = ("studyInstanceUID", "studyInstanceUid")


@routes.get("/ngv/multimonitor-api", allow_head=False)
async def multimonitor(request: web.Request) -> web.Response:
    params = QueryParams(request.query)
    username = params.one("username", required=True)
    role = params.one("role", required=True)
    patient_id = params.one("patientID", required=True, max_length=LO_MAX, dicom=True)
    monitors_text = params.one("numberOfMonitors", required=True, max_length=8)
    if monitors_text not in ("1", "2"):
        raise InvalidInput("numberOfMonitors: expected 1 or 2", "numberOfMonitors")
    monitors = int(monitors_text)
    issuer = params.one("idIssuer", required=monitors == 2, max_length=LO_MAX, dicom=True)
    study_uids = params.uids(STUDY_PARAMETER, aliases=STUDY_ALIASES)
    accession = params.one("accNum", max_length=ACCESSION_MAX, dicom=True)
    if study_uids and accession:
        raise InvalidInput(f"{STUDY_PARAMETER} and accNum cannot be used together", "accNum")
    studies = StudyRequest(
        study_uids=study_uids, accession=accession, accession_any_patient=True,
        patient_id=patient_id, issuer=issuer, preload=params.uids("fullPreloadStudy"),
    )
    sticky = params.sticky()
    issue = IssueRequest(
        username=username, role=role, studies=studies,
        options=viewing_options(params, pathology=False), sticky=sticky,
        source_nodes=params.ae_titles("sourceNodes"), client_address=client_address(request),
    )
    tokens = await request.app[ISSUER].issue_monitors(issue, monitors)
    body = {"primaryMonitorRelativeUrl": viewer_url(tokens[0], sticky)}
    if monitors == 2:
        body["secondaryMonitorRelativeUrl"] = viewer_url(tokens[1], sticky)
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def viewer_url(token: str, sticky: str) -> str:
    """The relative URL that redeems `token`, with `&sticky=VALUE` when the request had one."""
    query = {"q": token, **({"sticky": sticky} if sticky else {})}
    return f"/ngv?{urlencode(query)}"
