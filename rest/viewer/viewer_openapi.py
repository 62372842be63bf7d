"""OpenAPI entries of the viewer's routes (merged into /api/openapi.json by rest/openapi.py).

All are authorised by the viewer session cookie (`ngv_session`), not by the API key.
"""

from __future__ import annotations

from typing import Any

from node.input_fields import UID_SCHEMA

_JSON = {"content": {"application/json": {"schema": {"type": "object"}}}}
_SESSION = {"401": {"description": "No valid viewer session.", **_JSON},
            "403": {"description": "Study outside the session, or feature not allowed.",
                    **_JSON}}
_STUDY = {"name": "study", "in": "path", "required": True, "schema": UID_SCHEMA}
_SOP = {"name": "sop", "in": "path", "required": True, "schema": UID_SCHEMA}
_NOT_FOUND = {"404": {"description": "No such instance in this study.", **_JSON}}
# State-changing session routes (rest/same_origin.py).
SAME_ORIGIN = {
    "403": {"description": "Study outside the session, feature not allowed, or a cross-origin "
                           "request (Origin or Sec-Fetch-Site).", **_JSON},
    "415": {"description": "The body is not sent as application/json.", **_JSON}}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


_SEARCH_TEXT = {"type": "string", "maxLength": 64}
_DATE = {"type": "string", "pattern": r"^\d{4}-?\d{2}-?\d{2}$"}

VIEWER_PATHS: dict[str, Any] = {
    "/ngv/viewer": {"get": {
        "summary": "The viewer page (session cookie).",
        "responses": {"200": {"description": "The viewer.",
                              "content": {"text/html": {"schema": {"type": "string"}}}},
                      "401": {"description": "No valid session.",
                              "content": {"text/html": {"schema": {"type": "string"}}}}},
    }},
    "/ngv/static/{name}": {"get": {
        "summary": "The viewer's scripts and style sheet.",
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": {
            "type": "string", "pattern": r"^[A-Za-z0-9_-]+\.(js|css|svg)$"}}],
        "responses": {"200": {"description": "The file."},
                      "404": {"description": "No such file.", **_JSON}},
    }},
    "/ngv/api/studies": {"get": {
        "summary": "The studies the session may open, with retrieval state and counts.",
        "responses": {"200": {"description": "The history panel's studies.", **_JSON},
                      **_SESSION},
    }},
    "/ngv/api/studies/{study}/series": {"get": {
        "summary": "A study's series and instances in display order, and its layout.",
        "parameters": [_STUDY],
        "responses": {"200": {"description": "Series, instances, layout.", **_JSON},
                      **_SESSION},
    }},
    "/ngv/api/studies/{study}/instances/{sop}/frames/{frame}": {"get": {
        "summary": "A frame rendered to PNG or JPEG (modality LUT, VOI, photometric).",
        "parameters": [
            _STUDY, _SOP,
            {"name": "frame", "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 1}},
            _query("wc", "Window centre (with ww).", {"type": "number"}),
            _query("ww", "Window width (with wc).", {"type": "number"}),
            _query("voi", "VOI function.",
                   {"type": "string", "enum": ["LINEAR", "LINEAR_EXACT", "SIGMOID"]}),
            _query("format", "Image format.", {"type": "string", "enum": ["png", "jpeg"]}),
            _query("quality", "JPEG quality.", {"type": "integer", "minimum": 1,
                                                "maximum": 100}),
            _query("size", "Largest side in pixels.", {"type": "integer", "minimum": 1,
                                                       "maximum": 4096}),
        ],
        "responses": {
            "200": {"description": "The image; ETag, X-Window, X-Frames.",
                    "content": {"image/png": {}, "image/jpeg": {}}},
            "304": {"description": "Not modified (If-None-Match)."},
            "400": {"description": "Bad parameter.", **_JSON},
            "422": {"description": "Not an image, or not decodable.", **_JSON},
            **_SESSION, **_NOT_FOUND},
    }},
    "/ngv/api/studies/{study}/instances/{sop}/video": {"get": {
        "summary": "The stored video stream (MP4), with range requests.",
        "parameters": [_STUDY, _SOP],
        "responses": {"200": {"description": "The video.", "content": {"video/mp4": {}}},
                      "422": {"description": "Not a video.", **_JSON}, **_SESSION,
                      **_NOT_FOUND},
    }},
    "/ngv/api/studies/{study}/instances/{sop}/document": {"get": {
        "summary": "The encapsulated PDF document: inline only when it says application/pdf "
                   "and begins with %PDF-, else an attachment (application/octet-stream).",
        "parameters": [_STUDY, _SOP],
        "responses": {"200": {"description": "The document.",
                              "content": {"application/pdf": {},
                                          "application/octet-stream": {}}},
                      "422": {"description": "Not a document.", **_JSON}, **_SESSION,
                      **_NOT_FOUND},
    }},
    "/ngv/api/studies/{study}/instances/{sop}/report": {"get": {
        "summary": "A Structured Report as lines of readable text.",
        "parameters": [_STUDY, _SOP],
        "responses": {"200": {"description": "Title and lines.", **_JSON},
                      "422": {"description": "Not a report.", **_JSON}, **_SESSION,
                      **_NOT_FOUND},
    }},
    "/ngv/api/studies/{study}/iso": {"get": {
        "summary": "The study as an ISO 9660 DICOM medium (download permission).",
        "parameters": [_STUDY],
        "responses": {"200": {"description": "The ISO image.",
                              "content": {"application/x-iso9660-image": {}}},
                      "404": {"description": "Study not found.", **_JSON},
                      "413": {"description": "Larger than media.max_iso_bytes.", **_JSON},
                      **_SESSION},
    }},
    "/ngv/api/search": {"get": {
        "summary": "Search the local index and the source nodes (search permission).",
        "parameters": [
            _query("patientName", "Patient name, * and ? wildcards.", _SEARCH_TEXT),
            _query("patientID", "Patient ID.", _SEARCH_TEXT),
            _query("accNum", "Accession number.", _SEARCH_TEXT),
            _query("dateFrom", "First study date.", _DATE),
            _query("dateTo", "Last study date.", _DATE),
            _query("modality", "Modality in study.", _SEARCH_TEXT),
        ],
        "responses": {"200": {"description": "Matching studies, failed nodes.", **_JSON},
                      "400": {"description": "Bad or no search key.", **_JSON}, **_SESSION},
    }},
    "/ngv/api/search/open": {"post": {
        "summary": "Add a found study to the session (retrieved when remote).",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["studyInstanceUID"],
            "properties": {"studyInstanceUID": {"type": "string"},
                           "source": {"type": "string"}}}}}},
        "responses": {"200": {"description": "Added.", **_JSON},
                      "400": {"description": "Not a UID, unknown source.", **_JSON},
                      **_SESSION, **SAME_ORIGIN},
    }},
}
