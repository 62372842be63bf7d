"""GET /ngv/obscurl: the token that opens studies, or a patient's history, in one monitor."""

from __future__ import annotations

from typing import cast

from aiohttp import web

from node.errors import InvalidInput
from node.viewing import IssueRequest, ViewingOptions
from node.viewing.options import AnnotationVisibility
from node.viewing.study_resolution import StudyRequest
from rest.client_address import client_address
from rest.params import QueryParams
from rest.state import ISSUER

routes = web.RouteTableDef()

# DICOM value lengths: Accession Number is SH, Patient ID and Container Identifier are LO.
ACCESSION_MAX = 16
LO_MAX = 64


def viewing_options(params: QueryParams, *, pathology: bool) -> ViewingOptions:
    """The display options; the digital-pathology ones exist only on the obscurl API."""
    anonymize = params.boolean("anonymize", False)
    hide_search = params.boolean("hideSearch", True)
    if not pathology:
        return ViewingOptions(anonymize=anonymize, hide_search=hide_search)
    return ViewingOptions(
        anonymize=anonymize,
        hide_search=hide_search,
        hide_documents=params.boolean("hideDocuments", True),
        hide_layers=params.boolean("hideLayers", False),
        annotation_visibility=cast(AnnotationVisibility, params.choice(
            "annotationVisibility", ("ALL", "USER"), "ALL")),
        container_identifier=params.one("containerIdentifier", max_length=LO_MAX),
    )


@routes.get("/ngv/obscurl", allow_head=False)
async def obscurl(request: web.Request) -> web.Response:
    params = QueryParams(request.query)
    username = params.one("username", required=True)
    role = params.one("role", required=True)
    studies = StudyRequest(
        study_uids=params.uids("studyUID"),
        accession=params.one("accNum", max_length=ACCESSION_MAX, dicom=True),
        accession_any_patient=False,
        patient_id=params.one("patientID", max_length=LO_MAX, dicom=True),
        # Not in the spec's table for this API but in the multimonitor API's: a Patient ID that
        # patients of several issuers share needs it (resolve.patient_studies).
        issuer=params.one("idIssuer", max_length=LO_MAX, dicom=True),
        history_list=params.uids("historyList"),
        preload=params.uids("fullPreloadStudy"),
    )
    if not (studies.study_uids or studies.accession or studies.patient_id):
        raise InvalidInput("one of studyUID, accNum or patientID is required", "studyUID")
    options = viewing_options(params, pathology=True)
    if options.container_identifier and not studies.accession:
        raise InvalidInput("containerIdentifier must be used together with accNum",
                           "containerIdentifier")
    issue = IssueRequest(
        username=username, role=role, studies=studies, options=options,
        sticky=params.sticky(), source_nodes=params.ae_titles("sourceNodes"),
        client_address=client_address(request),
    )
    token = await request.app[ISSUER].issue_single(issue)
    return web.Response(text=token, content_type="text/plain",
                        headers={"Cache-Control": "no-store"})
