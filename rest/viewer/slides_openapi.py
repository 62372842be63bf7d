"""OpenAPI entries of the viewer's slide routes (merged into /api/openapi.json by rest/openapi.py).

All are authorised by the viewer session cookie and limited to the context's case or slide, or
to the slides of the studies its POST request named.
"""

from __future__ import annotations

from typing import Any

_JSON = {"content": {"application/json": {"schema": {"type": "object"}}}}
_IMAGE = {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                      "image/png": {"schema": {"type": "string", "format": "binary"}}}}
_SESSION = {"401": {"description": "No valid viewer session.", **_JSON},
            "403": {"description": "Slide outside the session's case or named slide.", **_JSON}}
_SAME_ORIGIN = {
    "403": {"description": "Slide outside the session, a cross-origin request (Origin or "
                           "Sec-Fetch-Site), or a session with hideLayers (it sees no layer, "
                           "so it may change none).", **_JSON},
    "415": {"description": "The body is not sent as application/json.", **_JSON}}
_SLIDE = {"name": "slide_id", "in": "path", "required": True,
          "description": "The slide's containerIdentifier (in an anonymized session, the "
                         "opaque alias the tray gave instead).", "schema": {"type": "string"}}
_FORMAT = {"name": "fmt", "in": "path", "required": True,
           "schema": {"type": "string", "enum": ["jpeg", "jpg", "png"]}}
_LAYER = {"name": "name", "in": "path", "required": True, "description": "Layer name.",
          "schema": {"type": "string", "maxLength": 64}}
_LUT = {"name": "lut", "in": "query", "required": False,
        "description": "1: the slide's colour profile applied.",
        "schema": {"type": "string", "enum": ["0", "1", "true", "false", "yes", "no"]}}


def _get(summary: str, parameters: list[dict[str, Any]], ok: dict[str, Any]) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": parameters,
                    "responses": {"200": {"description": summary, **ok}, **_SESSION}}}


_TILE = _get("A DeepZoom tile.", [
    _SLIDE, {"name": "level", "in": "path", "required": True, "schema": {"type": "integer"}},
    {"name": "col", "in": "path", "required": True, "schema": {"type": "integer"}},
    {"name": "row", "in": "path", "required": True, "schema": {"type": "integer"}},
    _FORMAT, _LUT], _IMAGE)

SLIDE_PATHS: dict[str, Any] = {
    "/ngv/slides": _get("The session's slides (the tray), which to open, whether an import may "
                        "bring more (pending), the case's accession numbers, layer options.",
                        [], _JSON),
    "/ngv/slides/{slide_id}": _get("A slide's size, microns per pixel, whether a colour "
                                   "profile applies and whether it has a .cube.",
                                   [_SLIDE], _JSON),
    "/ngv/slides/{slide_id}/metadata": _get("Specimen, block and slide metadata.", [_SLIDE],
                                            _JSON),
    "/ngv/slides/{slide_id}/dz.dzi": _get(
        "The DeepZoom descriptor.", [_SLIDE],
        {"content": {"application/xml": {"schema": {"type": "string"}}}}),
    "/ngv/slides/{slide_id}/dz_files/{level}/{col}_{row}.{fmt}": _TILE,
    "/ngv/slides/{slide_id}/thumbnail.{fmt}": _get("A thumbnail.", [_SLIDE, _FORMAT], _IMAGE),
    "/ngv/slides/{slide_id}/{name}.{fmt}": _get(
        "The label or macro image (403 in an anonymized session: labels carry names).",
        [_SLIDE, {"name": "name", "in": "path", "required": True,
                  "schema": {"type": "string", "enum": ["label", "macro"]}}, _FORMAT], _IMAGE),
    "/ngv/slides/{slide_id}/layers": _get(
        "Annotation layers visible to the session (annotationVisibility, hideLayers).",
        [_SLIDE], _JSON),
    "/ngv/slides/{slide_id}/layers/{name}": {
        "put": {"summary": "Save a layer as the session's user.", "parameters": [_SLIDE, _LAYER],
                "requestBody": {"required": True, **_JSON},
                "responses": {"200": {"description": "Saved.", **_JSON},
                              "400": {"description": "Bad shapes.", **_JSON}, **_SESSION,
                              **_SAME_ORIGIN}},
        "delete": {"summary": "Delete one of the session user's layers.",
                   "parameters": [_SLIDE, _LAYER],
                   "responses": {"200": {"description": "Deleted.", **_JSON},
                                 "404": {"description": "No such layer of this user.", **_JSON},
                                 **_SESSION, "403": _SAME_ORIGIN["403"]}},
    },
    "/ngv/vendor/{package}/{path}": _get(
        "OpenSeadragon's built files, from node_modules.",
        [{"name": "package", "in": "path", "required": True,
          "schema": {"type": "string", "enum": ["openseadragon"]}},
         {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}],
        {"content": {"text/javascript": {"schema": {"type": "string"}}}}),
}
