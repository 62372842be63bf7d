"""The input models' JSON schemas (pydantic's, JSON Schema 2020-12) as OpenAPI 3.0 schemas.

The node's models are written for checking input; this is the one place that knows what the
OpenAPI 3.0 document cannot say as JSON Schema does: no `null` type (a field that may be absent
is simply not required), nested definitions under components/schemas, and no titles made up
from field names.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

COMPONENTS = "#/components/schemas/"
# Defaults that only mean "absent": an empty text, an empty list, no value.
_ABSENT: tuple[Any, ...] = ("", [], None)


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's schema, nested models inline (query parameters are flat)."""
    return _clean(model.model_json_schema(by_alias=True))


def openapi_components(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """The model's schema and those of the models it holds, by name, referring to each other
    as components/schemas."""
    schema = model.model_json_schema(by_alias=True, ref_template=COMPONENTS + "{model}")
    definitions = schema.pop("$defs", {})
    return {name: _clean(item) for name, item in {**definitions, model.__name__: schema}.items()}


def _clean(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_clean(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    options = schema.get("anyOf")
    if options is not None:
        present = [option for option in options if option.get("type") != "null"]
        if len(present) == 1:
            rest = {k: v for k, v in schema.items() if k != "anyOf"}
            return _clean({**present[0], **rest})
    out = {}
    for key, value in schema.items():
        if key == "title" or (key == "default" and value in _ABSENT):
            continue
        # Property names are data, not schema keywords: a property may be called "title".
        out[key] = ({name: _clean(item) for name, item in value.items()}
                    if key == "properties" else _clean(value))
    return out
