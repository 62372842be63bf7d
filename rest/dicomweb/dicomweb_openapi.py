"""OpenAPI entries of the DICOMweb routes (merged into /api/openapi.json by rest/openapi.py).

Each route takes the API key or a viewer session cookie (rest/dicomweb/readers.py). Attribute
matching parameters are open-ended (any keyword or tag), so only the control parameters are
listed.
"""

from __future__ import annotations

from typing import Any

from node.input_fields import UID_SCHEMA

_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_DICOM_JSON = {"content": {"application/dicom+json": {
    "schema": {"type": "array", "items": {"type": "object"}}}}}
_ANSWERS = {
    "204": {"description": "Nothing matches."},
    "400": {"description": "A parameter is not an attribute, or its value not a UID, date, "
                           "time or number the attribute takes; it is named.", **_ERROR},
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
            "schema": UID_SCHEMA}


_STUDY = _uid("study", "Study Instance UID.")
_SERIES = _uid("series", "Series Instance UID.")
_SOP = _uid("sop", "SOP Instance UID.")
_INSTANCE = [_STUDY, _SERIES, _SOP]
_FRAMES = {"name": "frames", "in": "path", "required": True,
           "description": "Frame numbers from 1, comma-separated.",
           "schema": {"type": "string", "pattern": r"^[0-9]{1,9}(,[0-9]{1,9})*$"}}
_FRAME = {"name": "frame", "in": "path", "required": True, "description": "Frame number.",
          "schema": {"type": "string", "pattern": r"^[0-9]{1,9}$"}}
_TAG = {"name": "tag", "in": "path", "required": True, "description": "The element's tag.",
        "schema": {"type": "string", "pattern": "^[0-9A-Fa-f]{8}$"}}
_RENDER_PARAMETERS = [
    {"name": "window", "in": "query", "required": False,
     "description": "center,width[,linear|linear-exact|sigmoid]",
     "schema": {"type": "string", "maxLength": 64}},
    {"name": "viewport", "in": "query", "required": False, "description": "vw,vh in pixels.",
     "schema": {"type": "string", "maxLength": 64}},
    {"name": "quality", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
]
_MULTIPART = {"content": {"multipart/related": {"schema": {"type": "string",
                                                            "format": "binary"}}}}
_IMAGES = {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                       "image/png": {"schema": {"type": "string", "format": "binary"}}}}
_READ_ANSWERS = {key: body for key, body in _ANSWERS.items() if key != "204"} | {
    "404": {"description": "No such study, series, instance, frame or element.", **_ERROR}}


def _read(summary: str, path: list[dict[str, Any]], ok: dict[str, Any],
          query: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"get": {"summary": f"WADO-RS: {summary}",
                    "security": [{"apiKey": []}, {"viewerSession": []}],
                    "parameters": [*path, *(query or [])],
                    "responses": {"200": {"description": summary, **ok}, **_READ_ANSWERS}}}


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
                                   "e.g. a duplicate kept, or a session's instance stored "
                                   "with its study's patient's IssuerOfPatientID filled in); "
                                   "a Warning header says why.",
                    **_STORE_RESULT},
            **_STORE_ANSWERS}}}


DICOMWEB_PATHS: dict[str, Any] = {
    "/dicom-web/studies": {**_search("studies (for a session that may search, also the "
                                     "source nodes' by C-FIND; one that does not answer in "
                                     "time is named in a Warning header).", []),
                           **_store("instances of any studies.", [])},
    "/dicom-web/series": _search("series of any study.", []),
    "/dicom-web/instances": _search("instances of any study.", []),
    "/dicom-web/studies/{study}/series": _search("a study's series.", [_STUDY]),
    "/dicom-web/studies/{study}/instances": _search("a study's instances.", [_STUDY]),
    "/dicom-web/studies/{study}/series/{series}/instances": _search(
        "a series' instances.", [_STUDY, _SERIES]),
    "/dicom-web/studies/{study}": {
        **_read("a study's instances.", [_STUDY], _MULTIPART),
        **_store("instances of one study (others are refused).", [_STUDY])},
    "/dicom-web/studies/{study}/series/{series}": _read("a series' instances.",
                                                        [_STUDY, _SERIES], _MULTIPART),
    "/dicom-web/studies/{study}/series/{series}/instances/{sop}": _read(
        "an instance.", _INSTANCE, _MULTIPART),
    "/dicom-web/studies/{study}/metadata": _read("a study's metadata.", [_STUDY], _DICOM_JSON),
    "/dicom-web/studies/{study}/series/{series}/metadata": _read(
        "a series' metadata.", [_STUDY, _SERIES], _DICOM_JSON),
    "/dicom-web/studies/{study}/series/{series}/instances/{sop}/metadata": _read(
        "an instance's metadata.", _INSTANCE, _DICOM_JSON),
    "/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/{frames}": _read(
        "frames.", [*_INSTANCE, _FRAMES], _MULTIPART),
    "/dicom-web/studies/{study}/series/{series}/instances/{sop}/bulkdata/{tag}": _read(
        "an element's bulk data.", [*_INSTANCE, _TAG], _MULTIPART),
    "/dicom-web/studies/{study}/series/{series}/instances/{sop}/rendered": _read(
        "the instance rendered.", _INSTANCE, _IMAGES, _RENDER_PARAMETERS),
    "/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/{frame}/rendered": _read(
        "a frame rendered.", [*_INSTANCE, _FRAME], _IMAGES, _RENDER_PARAMETERS),
    "/dicom-web/studies/{study}/rendered": _read(
        "a study's images rendered, one part each.", [_STUDY], _MULTIPART, _RENDER_PARAMETERS),
    "/dicom-web/studies/{study}/series/{series}/rendered": _read(
        "a series' images rendered, one part each.", [_STUDY, _SERIES], _MULTIPART,
        _RENDER_PARAMETERS),
    "/dicom-web/studies/{study}/thumbnail": _read("a study's thumbnail.", [_STUDY], _IMAGES,
                                                  _RENDER_PARAMETERS),
    "/dicom-web/studies/{study}/series/{series}/thumbnail": _read(
        "a series' thumbnail.", [_STUDY, _SERIES], _IMAGES, _RENDER_PARAMETERS),
    "/dicom-web/studies/{study}/series/{series}/instances/{sop}/thumbnail": _read(
        "an instance's thumbnail.", _INSTANCE, _IMAGES, _RENDER_PARAMETERS),
    "/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/{frame}/thumbnail":
        _read("a frame's thumbnail.", [*_INSTANCE, _FRAME], _IMAGES, _RENDER_PARAMETERS),
}
