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


DICOMWEB_PATHS: dict[str, Any] = {
    "/dicom-web/studies": _search("studies.", []),
    "/dicom-web/series": _search("series of any study.", []),
    "/dicom-web/instances": _search("instances of any study.", []),
    "/dicom-web/studies/{study}/series": _search("a study's series.", [_STUDY]),
    "/dicom-web/studies/{study}/instances": _search("a study's instances.", [_STUDY]),
    "/dicom-web/studies/{study}/series/{series}/instances": _search(
        "a series' instances.", [_STUDY, _SERIES]),
}
