"""GET /ngv/multimonitor-api: tokens for one or two monitors, for one patient.

The spec spells the study parameter `studyIntanceUID` in its table and example and
`studyInstanceUid` in its prose; all spellings are accepted, together with the correct
`studyInstanceUID`, and the OpenAPI document shows the table's first.

Each URL carries the request's `sticky` too, so that a proxy routing on it sends the token's
redemption to the instance that the viewer's later requests reach.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from aiohttp import web
from pydantic import Field, model_validator

from node.input_fields import checked, problem
from node.viewing import IssueRequest
from node.viewing.study_resolution import StudyRequest
from rest.client_address import client_address
from rest.obscurl import ACCESSION_MAX, LO_MAX, TokenQuery
from rest.params import QueryText, Repeated, Uids, parse_query
from rest.state import ISSUER

routes = web.RouteTableDef()

STUDY_PARAMETER = "studyIntanceUID"


def _monitors_problem(value: str) -> str | None:
    return None if value in ("1", "2") else "expected 1 or 2"


class MultimonitorQuery(TokenQuery):
    patient_id: Annotated[str, QueryText(LO_MAX, dicom=True)] = Field(
        alias="patientID", description="The patient.")
    monitors: Annotated[str, QueryText(8), checked(_monitors_problem)] = Field(
        alias="numberOfMonitors", description="How many tokens to return.",
        json_schema_extra={"enum": ["1", "2"]})
    issuer: Annotated[str, QueryText(LO_MAX, dicom=True)] = Field(
        "", alias="idIssuer", description="Issuer of Patient ID (NONE: the patient whose ID "
                                          "has no issuer); required with 2 monitors.")
    study_uids: Annotated[Uids, Repeated((
        ("studyInstanceUID", "Alias of studyIntanceUID (values of both spellings are taken "
                             "together)."),
        ("studyInstanceUid", "Alias of studyIntanceUID, as the spec's prose spells it."),
    ))] = Field((), alias="studyIntanceUID", description=(
        "Studies for the first monitor, spelt as in the spec's table and example; not with "
        "accNum."))
    accession: Annotated[str, QueryText(ACCESSION_MAX, dicom=True)] = Field(
        "", alias="accNum", description="Accession Number for the first monitor; not with "
                                        "studyIntanceUID.")

    @model_validator(mode="after")
    def _one_patient_one_choice(self) -> MultimonitorQuery:
        if self.monitors == "2" and not self.issuer:
            raise problem("idIssuer is required", at="idIssuer", alone=True)
        if self.study_uids and self.accession:
            raise problem(f"{STUDY_PARAMETER} and accNum cannot be used together", at="accNum",
                          alone=True)
        return self


@routes.get("/ngv/multimonitor-api", allow_head=False)
async def multimonitor(request: web.Request) -> web.Response:
    query = parse_query(MultimonitorQuery, request.query)
    monitors = int(query.monitors)
    studies = StudyRequest(
        study_uids=query.study_uids, accession=query.accession, accession_any_patient=True,
        patient_id=query.patient_id, issuer=query.issuer, preload=query.full_preload_study,
    )
    issue = IssueRequest(
        username=query.username, role=query.role, studies=studies,
        options=query.viewing_options(), sticky=query.sticky,
        source_nodes=query.source_nodes, client_address=client_address(request),
    )
    tokens = await request.app[ISSUER].issue_monitors(issue, monitors)
    body = {"primaryMonitorRelativeUrl": viewer_url(tokens[0], query.sticky)}
    if monitors == 2:
        body["secondaryMonitorRelativeUrl"] = viewer_url(tokens[1], query.sticky)
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def viewer_url(token: str, sticky: str) -> str:
    """The relative URL that redeems `token`, with `&sticky=VALUE` when the request had one."""
    query = {"q": token, **({"sticky": sticky} if sticky else {})}
    return f"/ngv?{urlencode(query)}"
