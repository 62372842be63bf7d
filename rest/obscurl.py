"""GET /ngv/obscurl: the token that opens studies, or a patient's history, in one monitor."""

from __future__ import annotations

from typing import Annotated, Literal

from aiohttp import web
from pydantic import Field, model_validator

from node.input_fields import problem
from node.viewing import IssueRequest, ViewingOptions
from node.viewing.study_resolution import StudyRequest
from rest.client_address import client_address
from rest.params import AeTitles, Boolean, Choice, QueryModel, QueryText, Sticky, Uids, parse_query
from rest.state import ISSUER

routes = web.RouteTableDef()

# DICOM value lengths: Accession Number is SH, Patient ID and Container Identifier are LO.
ACCESSION_MAX = 16
LO_MAX = 64


class TokenQuery(QueryModel):
    """The parameters every token API takes."""

    username: Annotated[str, QueryText()] = Field(
        description="Who asks (auditing; selects the user's hanging protocols).")
    role: Annotated[str, QueryText()] = Field(
        description="A role that exists on the node (`python -m node role add`).")
    full_preload_study: Uids = Field((), alias="fullPreloadStudy",
                                     description="Studies to preload (retrieved ahead of time).")
    sticky: Sticky = Field("", description="Routing key: requests with the same value reach the "
                                           "same instance; echoed in the X-Sticky response "
                                           "header.")
    anonymize: Boolean = Field(False, description="Show patient data anonymized.")
    hide_search: Boolean = Field(True, alias="hideSearch",
                                 description="Hide the study search button.")
    source_nodes: AeTitles = Field((), alias="sourceNodes", description=(
        "AE titles of configured source nodes to search, separated by ';' (default: all "
        "configured ones)."))

    def viewing_options(self) -> ViewingOptions:
        """The display options; the digital-pathology ones exist only on the obscurl API."""
        return ViewingOptions(anonymize=self.anonymize, hide_search=self.hide_search)


class ObscurlQuery(TokenQuery):
    study_uids: Uids = Field((), alias="studyUID", description=(
        "Studies to open. One of studyUID, accNum, patientID is required."))
    accession: Annotated[str, QueryText(ACCESSION_MAX, dicom=True)] = Field(
        "", alias="accNum", description="Accession Number: every study having it, any patient.")
    patient_id: Annotated[str, QueryText(LO_MAX, dicom=True)] = Field(
        "", alias="patientID", description="The patient whose history is shown; with accNum, "
                                           "that patient's studies with the accession number.")
    # Not in the spec's table for this API but in the multimonitor API's: a Patient ID that
    # patients of several issuers share needs it (resolve.patient_studies).
    issuer: Annotated[str, QueryText(LO_MAX, dicom=True)] = Field(
        "", alias="idIssuer", description=(
            "Issuer of Patient ID (NONE: the patient whose ID has no issuer); needed when "
            "patients of several issuers share patientID (409 otherwise)."))
    history_list: Uids = Field((), alias="historyList",
                               description="Studies to show in the patient history.")
    hide_documents: Boolean = Field(True, alias="hideDocuments",
                                    description="Hide documents attached to the studies.")
    hide_layers: Boolean = Field(False, alias="hideLayers",
                                 description="Digital pathology: hide annotation layers.")
    annotation_visibility: Annotated[Literal["ALL", "USER"], Choice] = Field(
        "ALL", alias="annotationVisibility",
        description="Digital pathology: who sees annotations.")
    container_identifier: Annotated[str, QueryText(LO_MAX)] = Field(
        "", alias="containerIdentifier",
        description="Digital pathology: the slide to show; only with accNum.")

    @model_validator(mode="after")
    def _what_to_open(self) -> ObscurlQuery:
        if not (self.study_uids or self.accession or self.patient_id):
            raise problem("one of studyUID, accNum or patientID is required", at="studyUID",
                          alone=True)
        if self.container_identifier and not self.accession:
            raise problem("containerIdentifier must be used together with accNum",
                          at="containerIdentifier", alone=True)
        return self

    def viewing_options(self) -> ViewingOptions:
        return ViewingOptions(
            anonymize=self.anonymize, hide_search=self.hide_search,
            hide_documents=self.hide_documents, hide_layers=self.hide_layers,
            annotation_visibility=self.annotation_visibility,
            container_identifier=self.container_identifier)


@routes.get("/ngv/obscurl", allow_head=False)
async def obscurl(request: web.Request) -> web.Response:
    query = parse_query(ObscurlQuery, request.query)
    studies = StudyRequest(
        study_uids=query.study_uids, accession=query.accession, accession_any_patient=False,
        patient_id=query.patient_id, issuer=query.issuer, history_list=query.history_list,
        preload=query.full_preload_study,
    )
    issue = IssueRequest(
        username=query.username, role=query.role, studies=studies,
        options=query.viewing_options(), sticky=query.sticky, source_nodes=query.source_nodes,
        client_address=client_address(request),
    )
    token = await request.app[ISSUER].issue_single(issue)
    return web.Response(text=token, content_type="text/plain",
                        headers={"Cache-Control": "no-store"})
