"""The OpenAPI document for every route, served at /api/openapi.json.

What routes take is generated from the models that check it: the token and media APIs' query
parameters (rest/params.py's models) and the POST body (node/sources/request_body.py), with one
UID schema everywhere (node/input_fields.py). What they answer is written by hand, next to the
routes; a test compares the paths and methods with the router so that they cannot drift, and
another validates the document against the OpenAPI 3.0 specification.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from rest.dicomweb.dicomweb_openapi import DICOMWEB_PATHS
from rest.iso_route import IsoQuery
from rest.middleware import public
from rest.multimonitor import MultimonitorQuery
from rest.obscurl import ObscurlQuery
from rest.ohif.ohif_openapi import OHIF_PATHS
from rest.operations_openapi import OPERATIONS_PATHS
from rest.params import query_parameters
from rest.viewer.slides_openapi import SLIDE_PATHS
from rest.viewer.viewer_openapi import VIEWER_PATHS

routes = web.RouteTableDef()

TOKEN_PATTERN = "^[0-9a-f]{64}$"
_MONITOR_URL = "^/ngv\\?q=[0-9a-f]{64}(&sticky=[^&]+)?$"


def _text(name: str, description: str, required: bool = False, max_length: int = 64,
          pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": max_length}
    if pattern:
        schema["pattern"] = pattern
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema}


def _boolean(name: str, description: str, default: bool) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string", "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$",
                       "default": "true" if default else "false"}}


_ERRORS = {
    "400": {"description": "A parameter is missing or invalid; `field` names it.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
    "401": {"description": "Missing or wrong API key.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
}
# Token APIs naming a patient: a Patient ID that patients of several issuers share, without
# idIssuer, names no one patient.
_AMBIGUOUS_PATIENT = {
    "409": {"description": "Patients of several issuers have this patientID: give idIssuer.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
}
_HTML_PAGE = {"content": {"text/html": {"schema": {"type": "string"}}}}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Viewer node API", "version": "1.0.0",
             "description": "Tokens that open studies in the viewer, and the viewer's session."},
    "components": {
        "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header",
                                       "name": "Authorization"},
                            "viewerSession": {"type": "apiKey", "in": "cookie",
                                              "name": "ngv_session"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string"}, "field": {"type": "string"}}},
            "MultimonitorUrls": {
                "type": "object", "required": ["primaryMonitorRelativeUrl"],
                "additionalProperties": False,
                "properties": {
                    "primaryMonitorRelativeUrl": {"type": "string", "pattern": _MONITOR_URL},
                    "secondaryMonitorRelativeUrl": {"type": "string",
                                                    "pattern": _MONITOR_URL},
                }},
        },
    },
    "paths": {
        "/ngv/obscurl": {"get": {
            "summary": "A token opening studies, an accession, or a patient's history.",
            "security": [{"apiKey": []}],
            "parameters": query_parameters(ObscurlQuery),
            "responses": {
                "200": {"description": "The token.", "content": {"text/plain": {
                    "schema": {"type": "string", "pattern": TOKEN_PATTERN}}}},
                **_ERRORS,
                **_AMBIGUOUS_PATIENT,
            },
        }},
        "/ngv/multimonitor-api": {"get": {
            "summary": "Tokens for one or two monitors for one patient.",
            "security": [{"apiKey": []}],
            "parameters": query_parameters(MultimonitorQuery),
            "responses": {
                "200": {"description": "Relative URLs opening each monitor; with the "
                                       "request's sticky as `&sticky=VALUE`, so that the "
                                       "redemption is routed like the viewer's requests.",
                        "content": {"application/json": {"schema": {
                            "$ref": "#/components/schemas/MultimonitorUrls"}}}},
                **_ERRORS,
                **_AMBIGUOUS_PATIENT,
            },
        }},
        "/ngv": {"get": {
            "summary": "Redeem a token (once) for a viewer session and go to the viewer.",
            "parameters": [
                {"name": "q", "in": "query", "required": True,
                 "schema": {"type": "string", "pattern": TOKEN_PATTERN}},
                {"name": "sticky", "in": "query", "required": False,
                 "description": "The token request's sticky (the multimonitor URLs carry it; "
                                "add it to a GET /ngv/obscurl token): not read by the node, "
                                "routed on by the proxy.",
                 "schema": {"type": "string", "pattern": r"^[\x21-\x7e]+$"}},
            ],
            "responses": {
                "302": {"description": "Session cookie set; redirect to the viewer."},
                "403": {"description": "Token already used, expired or revoked.", **_HTML_PAGE},
                "404": {"description": "Unknown token.", **_HTML_PAGE},
            },
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


def _path(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or {"type": "string"}}


_SLIDE_ID = _path("slide_id", "The slide's containerIdentifier.")
_IMAGE_FORMAT = _path("fmt", "Image format.", {"type": "string", "enum": ["jpeg", "jpg", "png"]})
_CONTAINER = _text("containerIdentifier", "The slide (its barcode).", True)
_IMAGE = {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                      "image/png": {"schema": {"type": "string", "format": "binary"}}}}
_JSON_OBJECT = {"content": {"application/json": {"schema": {"type": "object"}}}}
_NOT_FOUND = {"description": "No such slide, study or file.",
              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_LUT_FLAG = {"name": "lut", "in": "query", "required": False,
             "description": "1: apply the slide's colour chain (ICC profile, then its .cube).",
             "schema": {"type": "string", "enum": ["0", "1", "true", "false", "yes", "no"]}}


def _tile(summary: str) -> dict[str, Any]:
    return {"get": {
        "summary": summary, "security": [{"apiKey": []}],
        "parameters": [_SLIDE_ID, _path("level", "DeepZoom level.", {"type": "integer"}),
                       _path("col", "Tile column.", {"type": "integer"}),
                       _path("row", "Tile row.", {"type": "integer"}), _IMAGE_FORMAT, _LUT_FLAG],
        "responses": {"200": {"description": "The tile.", **_IMAGE},
                      "304": {"description": "Not modified (If-None-Match)."},
                      **_ERRORS, "404": _NOT_FOUND},
    }}


# Digital pathology and media routes (rest/slide_routes.py, rest/lut.py, rest/annotation_routes.py,
# rest/iso_route.py).
DOCUMENT["paths"].update({
    "/webdv/getIso": {"get": {
        "summary": "Studies as an ISO 9660 image (DICOM media, IHE PDI), streamed.",
        "security": [{"apiKey": []}],
        "parameters": query_parameters(IsoQuery),
        "responses": {
            "200": {"description": "The ISO image.", "content": {
                "application/x-iso9660-image": {"schema": {"type": "string",
                                                           "format": "binary"}}}},
            **_ERRORS, "404": _NOT_FOUND,
            "413": {"description": "The image would exceed media.max_iso_bytes.",
                    **_JSON_OBJECT},
        },
    }},
    "/webdv/lut": {
        "post": {
            "summary": "Store a slide's .cube colour table (raw body or multipart file).",
            "security": [{"apiKey": []}], "parameters": [_CONTAINER],
            "requestBody": {"required": True, "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {"schema": {"type": "object", "properties": {
                    "file": {"type": "string", "format": "binary"}}}}}},
            "responses": {"200": {"description": "Stored.", **_JSON_OBJECT}, **_ERRORS,
                          "404": {**_NOT_FOUND, "description": "No slide has this "
                                                               "containerIdentifier."},
                          "409": {"description": "The slide already has a .cube file.",
                                  **_JSON_OBJECT}},
        },
        "get": {
            "summary": "The slide's stored .cube file.",
            "security": [{"apiKey": []}], "parameters": [_CONTAINER],
            "responses": {"200": {"description": "The .cube file.", "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                **_ERRORS, "404": _NOT_FOUND},
        },
        "delete": {
            "summary": "Remove the slide's .cube file.",
            "security": [{"apiKey": []}], "parameters": [_CONTAINER],
            "responses": {"200": {"description": "Removed.", **_JSON_OBJECT}, **_ERRORS,
                          "404": _NOT_FOUND},
        },
    },
    "/webdv/slides": {"get": {
        "summary": "One slide's metadata by containerIdentifier, or a case's slides by accNum.",
        "security": [{"apiKey": []}],
        "parameters": [_text("containerIdentifier", "The slide."),
                       _text("accNum", "The case.")],
        "responses": {"200": {"description": "The slides.", **_JSON_OBJECT}, **_ERRORS,
                      "404": _NOT_FOUND},
    }},
    "/webdv/slides/{slide_id}": {"get": {
        "summary": "A slide's levels, tiles and DeepZoom layout.",
        "security": [{"apiKey": []}], "parameters": [_SLIDE_ID],
        "responses": {"200": {"description": "The description.", **_JSON_OBJECT}, **_ERRORS,
                      "404": _NOT_FOUND},
    }},
    "/webdv/slides/{slide_id}/metadata": {"get": {
        "summary": "A slide's specimen and preparation metadata.",
        "security": [{"apiKey": []}], "parameters": [_SLIDE_ID],
        "responses": {"200": {"description": "The metadata.", **_JSON_OBJECT}, **_ERRORS,
                      "404": _NOT_FOUND},
    }},
    "/webdv/slides/{slide_id}/dz.dzi": {"get": {
        "summary": "The DeepZoom descriptor.",
        "security": [{"apiKey": []}], "parameters": [_SLIDE_ID],
        "responses": {"200": {"description": "DZI XML.", "content": {
            "application/xml": {"schema": {"type": "string"}}}}, **_ERRORS, "404": _NOT_FOUND},
    }},
    "/webdv/slides/{slide_id}/dz/{level}/{col}_{row}.{fmt}": _tile("A DeepZoom tile."),
    "/webdv/slides/{slide_id}/dz_files/{level}/{col}_{row}.{fmt}": _tile(
        "A DeepZoom tile (OpenSeadragon's path for dz.dzi)."),
    "/webdv/slides/{slide_id}/thumbnail.{fmt}": {"get": {
        "summary": "The slide's thumbnail.",
        "security": [{"apiKey": []}],
        "parameters": [_SLIDE_ID, _IMAGE_FORMAT,
                       {"name": "size", "in": "query", "required": False,
                        "description": "Longest side in pixels.",
                        "schema": {"type": "integer", "default": 512}}],
        "responses": {"200": {"description": "The thumbnail.", **_IMAGE}, **_ERRORS,
                      "404": _NOT_FOUND},
    }},
    "/webdv/slides/{slide_id}/layers": {"get": {
        "summary": "The annotation layers a user sees on a slide.",
        "security": [{"apiKey": []}],
        "parameters": [_SLIDE_ID, {**_text("username", "The user."), "required": True},
                       _text("annotationVisibility", "ALL (default) or USER."),
                       _boolean("hideLayers", "Show no layers at all.", False)],
        "responses": {"200": {"description": "The layers.", **_JSON_OBJECT}, **_ERRORS,
                      "404": _NOT_FOUND},
    }},
    "/webdv/slides/{slide_id}/layers/{name}": {
        "put": {
            "summary": "Save (create or replace) the user's layer: {\"shapes\": [...]}.",
            "security": [{"apiKey": []}],
            "parameters": [_SLIDE_ID, _path("name", "The layer.", {"type": "string"}),
                           {**_text("username", "The user."), "required": True}],
            "requestBody": {"required": True, **_JSON_OBJECT},
            "responses": {"200": {"description": "Saved.", **_JSON_OBJECT}, **_ERRORS,
                          "404": _NOT_FOUND},
        },
        "delete": {
            "summary": "Delete the user's layer.",
            "security": [{"apiKey": []}],
            "parameters": [_SLIDE_ID, _path("name", "The layer.", {"type": "string"}),
                           {**_text("username", "The user."), "required": True}],
            "responses": {"200": {"description": "Deleted.", **_JSON_OBJECT}, **_ERRORS,
                          "404": _NOT_FOUND},
        },
    },
    "/webdv/slides/{slide_id}/layers/export": {"post": {
        "summary": "Layers as DICOM Microscopy Bulk Simple Annotations, one per user.",
        "security": [{"apiKey": []}],
        "parameters": [_SLIDE_ID, _text("username", "Only this user's layers.")],
        "responses": {"200": {"description": "The new SOP Instance UIDs.", **_JSON_OBJECT},
                      **_ERRORS, "404": _NOT_FOUND},
    }},
    "/webdv/slides/{slide_id}/{name}.{fmt}": {"get": {
        "summary": "The slide's label or macro image.",
        "security": [{"apiKey": []}],
        "parameters": [_SLIDE_ID, _path("name", "Which image.", {
            "type": "string", "enum": ["label", "macro"]}), _IMAGE_FORMAT],
        "responses": {"200": {"description": "The image.", **_IMAGE}, **_ERRORS,
                      "404": _NOT_FOUND},
    }},
})

# The viewer's page and data routes (session cookie) are documented beside them.
DOCUMENT["paths"].update(VIEWER_PATHS)
DOCUMENT["paths"].update(SLIDE_PATHS)
DOCUMENT["paths"].update(DICOMWEB_PATHS)
DOCUMENT["paths"].update(OPERATIONS_PATHS)
DOCUMENT["paths"].update(OHIF_PATHS)


@routes.get("/api/openapi.json", allow_head=False)
@public
async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)
