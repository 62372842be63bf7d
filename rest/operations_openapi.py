"""OpenAPI entries of the operations routes: probes, metrics, study deletion (merged into
/api/openapi.json by rest/openapi.py)."""

from __future__ import annotations

from typing import Any

from node.input_fields import UID_SCHEMA

_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_JSON = {"content": {"application/json": {"schema": {"type": "object"}}}}

OPERATIONS_PATHS: dict[str, Any] = {
    "/healthz": {"get": {
        "summary": "Liveness: the process answers (no key, no detail).",
        "responses": {"200": {"description": "Alive.", **_JSON}},
    }},
    "/readyz": {"get": {
        "summary": "Readiness: the database answers and the storage takes a file (no key).",
        "responses": {
            "200": {"description": "Ready.", **_JSON},
            "503": {"description": "Not ready; `failing` names the parts (database, storage).",
                    **_JSON},
        },
    }},
    "/api/studies/{study}": {"delete": {
        "summary": "Delete a stored study: gone from every query at once, its files removed "
                   "in the background.",
        "security": [{"apiKey": []}],
        "parameters": [{"name": "study", "in": "path", "required": True,
                        "description": "Study Instance UID.",
                        "schema": UID_SCHEMA}],
        "responses": {
            "202": {"description": "Deleted; `instances` and `bytes` it held.", **_JSON},
            "400": {"description": "Not a valid UID.", **_ERROR},
            "401": {"description": "Missing or wrong API key.", **_ERROR},
            "404": {"description": "The study is not stored.", **_ERROR},
        },
    }},
    "/metrics": {"get": {
        "summary": "Prometheus metrics of all the node's worker processes (text format 0.0.4).",
        "security": [{"apiKey": []}],
        "description": "Without the key when `[http] metrics_public = true`.",
        "responses": {
            "200": {"description": "The metrics.",
                    "content": {"text/plain": {"schema": {"type": "string"}}}},
            "401": {"description": "Missing or wrong API key.", **_ERROR},
        },
    }},
}
