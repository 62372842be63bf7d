"""OpenAPI entries of the DICOMweb routes (merged into /api/openapi.json by rest/openapi.py).

Each route takes the API key or a viewer session cookie (rest/dicomweb/access.py). Attribute
matching parameters are open-ended (any keyword or tag), so only the control parameters are
listed.
"""

from __future__ import annotations

from typing import Any

_UID = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)*$", "maxLength": 64}
_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_DICOM_JSON = {"content": {"application/dicom+json": {
    "schema": {"type": "array", "items": {"type": "object"}}}}}
_ANSWERS = {
    "204": {"description": "Nothing matches."},
    "400": {"description": "A parameter is not an attribute, UID or number; it is named.",
            **_ERROR},
    "401": {"description": "Neither the API key nor a viewer session.", **_ERROR},
    "403": {"description": "A study outside the session's grant.", **_ERROR},
    "406": {"description": "The Accept header asks for what the node cannot give.", **_ERROR},
}
_SEARCH_PARAMETERS = [
    {"name": "includefield", "in": "query", "required": False, "style": "form",
     "explode": True, "description": "Returned attributes by keyword or tag, or `all`.",
     "schema": {"type": "array", "items": {"type": "string", "maxLength": 64}}},
    {"name": "limit", "in": "query", "required": False, "description": "At most this many.",
     "schema": {"type": "integer", "minimum": 0, "maximum": 100_000}},
    {"name": "offset", "in": "query", "required": False, "description": "Skip this many.",
     "schema": {"type": "integer", "minimum": 0, "maximum": 1_000_000_000}},
    {"name": "fuzzymatching", "in": "query", "required": False,
     "description": "Accepted; matching stays exact (a Warning header says so).",
     "schema": {"type": "string", "enum": ["true", "false"]}},
]


def _uid(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": _UID}


_STUDY = _uid("study", "Study Instance UID.")
_SERIES = _uid("series", "Series Instance UID.")


def _search(summary: str, path: list[dict[str, Any]]) -> dict[str, Any]:
    return {"get": {"summary": f"QIDO-RS: {summary}",
                    "security": [{"apiKey": []}, {"viewerSession": []}],
                    "parameters": [*path, *_SEARCH_PARAMETERS],
                    "responses": {"200": {"description": "The matches, DICOM JSON.",
                                          **_DICOM_JSON}, **_ANSWERS}}}


_STORE_RESULT = {"content": {"application/dicom+json": {"schema": {"type": "object"}}}}
_STORE_ANSWERS = {
    "400": {"description": "Not multipart/related, no boundary, a malformed body, no part, "
                           "or a study that is not a UID; named.", **_ERROR},
    "401": _ANSWERS["401"],
    "403": {"description": "A session whose role does not allow `save`, or a study outside "
                           "its grant.", **_ERROR},
    "406": _ANSWERS["406"],
    "409": {"description": "No instance stored: FailedSOPSequence says why for each.",
            **_STORE_RESULT},
    "413": {"description": "The body is larger than dicomweb.max_stow_bytes.", **_ERROR},
    "415": {"description": "The body's `type` or a part's Content-Type is not "
                           "application/dicom.", **_ERROR},
}


def _store(summary: str, path: list[dict[str, Any]]) -> dict[str, Any]:
    return {"post": {
        "summary": f"STOW-RS: {summary}",
        "description": "Each part is one DICOM Part 10 file, streamed to disk and stored "
                       "through the ingest path. A session needs a role with `save` and "
                       "stores only into its studies (audited).",
        "security": [{"apiKey": []}, {"viewerSession": []}],
        "parameters": path,
        "requestBody": {"required": True, "content": {
            'multipart/related; type="application/dicom"': {
                "schema": {"type": "string", "format": "binary"}}}},
        "responses": {
            "200": {"description": "All stored: ReferencedSOPSequence, RetrieveURL.",
                    **_STORE_RESULT},
            "202": {"description": "Some failed (FailedSOPSequence) or warned (WarningReason, "
                                   "e.g. a duplicate kept); a Warning header says why.",
                    **_STORE_RESULT},
            **_STORE_ANSWERS}}}


DICOMWEB_PATHS: dict[str, Any] = {
    "/dicom-web/studies": {**_search("studies.", []),
                           **_store("instances of any studies.", [])},
    "/dicom-web/studies/{study}": _store("instances of one study (others are refused).",
                                         [_STUDY]),
    "/dicom-web/series": _search("series of any study.", []),
    "/dicom-web/instances": _search("instances of any study.", []),
    "/dicom-web/studies/{study}/series": _search("a study's series.", [_STUDY]),
    "/dicom-web/studies/{study}/instances": _search("a study's instances.", [_STUDY]),
    "/dicom-web/studies/{study}/series/{series}/instances": _search(
        "a series' instances.", [_STUDY, _SERIES]),
}
