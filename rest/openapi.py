"""The OpenAPI document for every route, served at /api/openapi.json.

Written by hand, next to the routes; a test compares its paths and methods with the router so
that it cannot drift.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from rest.middleware import public

routes = web.RouteTableDef()

UID_PATTERN = r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$"
TOKEN_PATTERN = "^[0-9a-f]{64}$"


def _text(name: str, description: str, required: bool = False, max_length: int = 64,
          pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": max_length}
    if pattern:
        schema["pattern"] = pattern
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema}


def _uids(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "style": "form", "explode": True,
            "schema": {"type": "array", "items": {"type": "string", "maxLength": 64,
                                                  "pattern": UID_PATTERN}}}


def _boolean(name: str, description: str, default: bool) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string", "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$",
                       "default": "true" if default else "false"}}


_DICOM_TEXT = r"^[^\\*?\x00-\x1f\x7f]+$"
_COMMON = [
    _text("username", "Who asks (auditing; selects the user's hanging protocols).", True),
    _text("role", "A role that exists on the node (`python -m node role add`).", True),
]
_SHARED_OPTIONS = [
    _uids("fullPreloadStudy", "Studies to preload (retrieved ahead of time)."),
    _text("sticky", "Routing key: requests with the same value reach the same instance; "
          "echoed in the X-Sticky response header.", pattern=r"^[\x21-\x7e]+$"),
    _boolean("anonymize", "Show patient data anonymized.", False),
    _boolean("hideSearch", "Hide the study search button.", True),
    _text("sourceNodes", "AE titles of configured source nodes to search, separated by ';' "
          "(default: all configured ones).", max_length=1024),
]
_ERRORS = {
    "400": {"description": "A parameter is missing or invalid; `field` names it.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
    "401": {"description": "Missing or wrong API key.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
}
_HTML_PAGE = {"content": {"text/html": {"schema": {"type": "string"}}}}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Viewer node API", "version": "1.0.0",
             "description": "Tokens that open studies in the viewer, and the viewer's session."},
    "components": {
        "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header",
                                       "name": "Authorization"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string"}, "field": {"type": "string"}}},
            "MultimonitorUrls": {
                "type": "object", "required": ["primaryMonitorRelativeUrl"],
                "additionalProperties": False,
                "properties": {
                    "primaryMonitorRelativeUrl": {"type": "string", "pattern": "^/ngv\\?q="},
                    "secondaryMonitorRelativeUrl": {"type": "string", "pattern": "^/ngv\\?q="},
                }},
        },
    },
    "paths": {
        "/ngv/obscurl": {"get": {
            "summary": "A token opening studies, an accession, or a patient's history.",
            "security": [{"apiKey": []}],
            "parameters": [
                *_COMMON,
                _uids("studyUID", "Studies to open. One of studyUID, accNum, patientID is "
                      "required."),
                _text("accNum", "Accession Number: every study having it, any patient.",
                      max_length=16, pattern=_DICOM_TEXT),
                _text("patientID", "The patient whose history is shown; with accNum, that "
                      "patient's studies with the accession number.", pattern=_DICOM_TEXT),
                _uids("historyList", "Studies to show in the patient history."),
                *_SHARED_OPTIONS,
                _boolean("hideDocuments", "Hide documents attached to the studies.", True),
                _boolean("hideLayers", "Digital pathology: hide annotation layers.", False),
                {"name": "annotationVisibility", "in": "query", "required": False,
                 "description": "Digital pathology: who sees annotations.",
                 "schema": {"type": "string", "enum": ["ALL", "USER"], "default": "ALL"}},
                _text("containerIdentifier", "Digital pathology: the slide to show; only with "
                      "accNum."),
            ],
            "responses": {
                "200": {"description": "The token.", "content": {"text/plain": {
                    "schema": {"type": "string", "pattern": TOKEN_PATTERN}}}},
                **_ERRORS,
            },
        }},
        "/ngv/multimonitor-api": {"get": {
            "summary": "Tokens for one or two monitors for one patient.",
            "security": [{"apiKey": []}],
            "parameters": [
                *_COMMON,
                _text("patientID", "The patient.", True, pattern=_DICOM_TEXT),
                {"name": "numberOfMonitors", "in": "query", "required": True,
                 "description": "How many tokens to return.",
                 "schema": {"type": "string", "enum": ["1", "2"]}},
                _text("idIssuer", "Issuer of Patient ID; required with 2 monitors.",
                      pattern=_DICOM_TEXT),
                _uids("studyInstanceUID", "Studies for the first monitor (also accepted: "
                      "studyIntanceUID, studyInstanceUid); not with accNum."),
                _text("accNum", "Accession Number for the first monitor; not with "
                      "studyInstanceUID.", max_length=16, pattern=_DICOM_TEXT),
                *_SHARED_OPTIONS,
            ],
            "responses": {
                "200": {"description": "Relative URLs opening each monitor.",
                        "content": {"application/json": {"schema": {
                            "$ref": "#/components/schemas/MultimonitorUrls"}}}},
                **_ERRORS,
            },
        }},
        "/ngv": {"get": {
            "summary": "Redeem a token (once) for a viewer session and go to the viewer.",
            "parameters": [{"name": "q", "in": "query", "required": True,
                            "schema": {"type": "string", "pattern": TOKEN_PATTERN}}],
            "responses": {
                "302": {"description": "Session cookie set; redirect to the viewer."},
                "403": {"description": "Token already used, expired or revoked.", **_HTML_PAGE},
                "404": {"description": "Unknown token.", **_HTML_PAGE},
            },
        }},
        "/ngv/viewer": {"get": {
            "summary": "The viewer page (session cookie).",
            "responses": {"200": {"description": "The viewer.", **_HTML_PAGE},
                          "401": {"description": "No valid session.", **_HTML_PAGE}},
        }},
        "/ngv/api/context": {"get": {
            "summary": "The session's viewing context: studies, their states, options.",
            "responses": {
                "200": {"description": "The context.",
                        "content": {"application/json": {"schema": {"type": "object"}}}},
                "401": {"description": "No valid session.",
                        "content": {"application/json": {"schema": {
                            "$ref": "#/components/schemas/Error"}}}},
            },
        }},
        "/api/openapi.json": {"get": {
            "summary": "This document.",
            "responses": {"200": {"description": "OpenAPI 3 document.",
                                  "content": {"application/json": {
                                      "schema": {"type": "object"}}}}},
        }},
    },
}


@routes.get("/api/openapi.json", allow_head=False)
@public
async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)
