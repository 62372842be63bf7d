"""OpenAPI entries of the viewer session's own routes (merged into /api/openapi.json by
rest/openapi.py): the slide viewer's page and static files, and the ISO download of OHIF's
"Download ISO" button. The slides' routes are in slides_openapi.py, OHIF's in
rest/ohif/ohif_openapi.py.

The ISO download is authorised by the viewer session cookie (`ngv_session`), not by the API key.
"""

from __future__ import annotations

from typing import Any

from node.input_fields import UID_SCHEMA

_JSON = {"content": {"application/json": {"schema": {"type": "object"}}}}
_HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
_SESSION = {"401": {"description": "No valid viewer session.", **_JSON},
            "403": {"description": "Study outside the session, or feature not allowed.",
                    **_JSON}}
_STUDY = {"name": "study", "in": "path", "required": True, "schema": UID_SCHEMA}

VIEWER_PATHS: dict[str, Any] = {
    "/ngv/viewer": {"get": {
        "summary": "The slide viewer's page (session cookie); a radiology context is sent to "
                   "OHIF.",
        "responses": {"200": {"description": "The slide viewer.", **_HTML},
                      "302": {"description": "Not a pathology case: OHIF on the context's "
                                             "studies (Location)."},
                      "401": {"description": "No valid session: the refusal page.", **_HTML}},
    }},
    "/ngv/static/{name}": {"get": {
        "summary": "The slide viewer's scripts and style sheet.",
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": {
            "type": "string", "pattern": r"^[A-Za-z0-9_-]+\.(js|css)$"}}],
        "responses": {"200": {"description": "The file."},
                      "404": {"description": "No such file.", **_JSON}},
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
}
