"""OpenAPI entries of OHIF's routes under /viewer (merged into /api/openapi.json by
rest/openapi.py). The page and its configuration need the viewer session cookie; the static
files are public (the same for every session, no data)."""

from __future__ import annotations

from typing import Any

_HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
_JSON = {"content": {"application/json": {"schema": {"type": "object"}}}}
_PAGE = {"get": {
    "summary": "OHIF Viewer's page for one of its routes (session cookie), e.g. "
               "/viewer/viewer?StudyInstanceUIDs=...",
    "responses": {"200": {"description": "The page; the dark waiting page while the studies "
                                         "it names are being retrieved or their retrieval "
                                         "failed (a study a searching session found on a "
                                         "source node is added to the session and retrieved "
                                         "first; one whose retrieval failed is retrieved "
                                         "again).", **_HTML},
                  "401": {"description": "No valid session: the dark refusal page.", **_HTML},
                  "503": {"description": "OHIF Viewer is not installed.", **_JSON}},
}}

OHIF_PATHS: dict[str, Any] = {
    "/viewer": _PAGE,
    "/viewer/{route}": {"get": {
        **_PAGE["get"],
        "parameters": [{"name": "route", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
    }},
    "/viewer/app-config.js": {"get": {
        "summary": "OHIF's configuration generated for the session's viewing context.",
        "responses": {"200": {"description": "The script.",
                              "content": {"text/javascript": {"schema": {"type": "string"}}}},
                      "401": {"description": "No valid session.", **_JSON},
                      "503": {"description": "OHIF Viewer is not installed.", **_JSON}},
    }},
    "/viewer/waiting.js": {"get": {
        "summary": "The script of the page shown while the studies are being retrieved.",
        "responses": {"200": {"description": "The script.",
                              "content": {"text/javascript": {"schema": {"type": "string"}}}}},
    }},
    "/viewer/retrieval-state": {"get": {
        "summary": "How many of the named studies of the session are still being retrieved, "
                   "and each one's progress, or why its retrieval failed (session cookie).",
        "parameters": [{"name": "StudyInstanceUIDs", "in": "query", "required": False,
                        "schema": {"type": "string"}}],
        "responses": {"200": {"description": "`{\"waiting\": n, \"studies\": "
                                             "[{\"studyInstanceUID\", \"state\", "
                                             "\"source\", \"received\", \"announced\", "
                                             "\"message\"}]}`", **_JSON},
                      "401": {"description": "No valid session.", **_JSON}},
    }},
    "/viewer/patients": {"get": {
        "summary": "The patients of the session's context, each with the URL of its own OHIF "
                   "window (session cookie; anonymized: \"Patient 1\", ... without name or ID).",
        "responses": {"200": {"description": "`{\"patients\": [{\"label\", \"name\", "
                                             "\"patientID\", \"issuer\", "
                                             "\"studyInstanceUIDs\", \"url\"}]}`", **_JSON},
                      "401": {"description": "No valid session.", **_JSON}},
    }},
    "/viewer/static/{build}/{path}": {"get": {
        "summary": "A file of the prepared OHIF build (gzip when accepted, immutable).",
        "parameters": [
            {"name": "build", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "The file."},
                      "404": {"description": "No such file in this build.", **_JSON},
                      "503": {"description": "OHIF Viewer is not installed.", **_JSON}},
    }},
}
