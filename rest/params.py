"""Query parameters of the token and media APIs as pydantic models, read strictly: each error is
a 400 naming its parameter, and the OpenAPI document's parameters come from the same models.

Rules shared by every API: a single-valued parameter given twice is an error; a text parameter
given empty counts as absent; booleans are `true`/`false` in any case; UIDs must be valid DICOM
UIDs; text that goes into a DICOM query may not carry wildcards or backslashes (they would
change what the query matches).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, get_origin

from multidict import MultiMapping
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import ErrorDetails

from node.errors import InvalidInput
from node.ingest.instance_record import is_valid_uid
from node.input_fields import PROBLEM, UID_SCHEMA, TextField, checked, problem
from rest.openapi_schemas import openapi_schema

_QUERY_UNSAFE = set("\\*?")
# What DICOM text parameters may hold, for the OpenAPI document.
_DICOM_TEXT = r"^[^\\*?\x00-\x1f\x7f]+$"


@dataclass(frozen=True)
class QueryText(TextField):
    """A text parameter's checks: at most `max_length` characters, no control characters, and
    in DICOM text no wildcard or backslash."""

    max_length: int = 64
    dicom: bool = False
    pattern: str | None = None

    def schema_extra(self) -> dict[str, Any]:
        pattern = self.pattern or (_DICOM_TEXT if self.dicom else None)
        return {"minLength": 1, **({"pattern": pattern} if pattern else {})}

    def validate(self, value: str) -> str:
        if not value.isprintable():
            raise problem("control characters are not allowed")
        if self.dicom and _QUERY_UNSAFE.intersection(value):
            raise problem("the characters \\ * ? are not allowed")
        return value


@dataclass(frozen=True)
class Repeated:
    """A 1-n parameter (repeated in the query), and the other spellings it is taken under
    (each with its description in the OpenAPI document); its values keep the request's order
    across spellings, and an error names the spelling the request used."""

    spellings: tuple[tuple[str, str], ...] = ()


def _boolean(value: Any) -> Any:
    if isinstance(value, str):
        lowered = value.lower()
        if lowered not in ("true", "false"):
            raise problem("expected true or false")
        return lowered == "true"
    return value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _uid_problem(value: str) -> str | None:
    return None if is_valid_uid(value) else f"not a valid DICOM UID: {value[:80]!r}"


def _ae_titles(value: Any) -> tuple[str, ...]:
    """AE titles separated by ';' (empty items ignored)."""
    text = QueryText(1024).validate(value)
    titles = tuple(dict.fromkeys(t.strip() for t in text.split(";") if t.strip()))
    for title in titles:
        if len(title) > 16 or "\\" in title:
            raise problem(f"{title[:40]!r} is not an AE title")
    return titles


def _sticky_problem(value: str) -> str | None:
    if all(0x21 <= ord(c) <= 0x7E for c in value):
        return None
    return "visible ASCII characters only"


Boolean = Annotated[bool, BeforeValidator(_boolean)]
Uids = Annotated[tuple[Annotated[str, checked(_uid_problem), WithJsonSchema(UID_SCHEMA)], ...],
                 Repeated(), AfterValidator(lambda uids: tuple(dict.fromkeys(uids)))]
AeTitles = Annotated[tuple[str, ...], BeforeValidator(_ae_titles), WithJsonSchema(
    {"type": "string", "minLength": 1, "maxLength": 1024})]
Sticky = Annotated[str, QueryText(pattern=r"^[\x21-\x7e]+$"), checked(_sticky_problem)]
Choice = BeforeValidator(_upper)


class QueryModel(BaseModel):
    """The parameters of one route, by their names in the query (aliases); parameters the
    route does not read are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


Query = TypeVar("Query", bound=QueryModel)


def parse_query(model: type[Query], query: MultiMapping[str]) -> Query:
    """The route's parameters from the query; InvalidInput naming the first one that is wrong."""
    lists: dict[str, list[str]] = {}
    for name, value in query.items():
        lists.setdefault(name, []).append(value)
    values: dict[str, Any] = {}
    spelt: dict[str, list[str]] = {}
    for alias, spellings, empty_is_absent in _reading(model):
        if spellings is not None:
            given = ([(key, value) for key, value in query.items() if key in spellings]
                     if len(spellings) > 1 else [(alias, value) for value in lists.get(alias, ())])
            if given:
                values[alias] = [value for _, value in given]
                spelt[alias] = [key for key, _ in given]
            continue
        found = lists.get(alias, [])
        if len(found) > 1:
            raise InvalidInput(f"{alias}: given {len(found)} times; it takes one value", alias)
        if found and (found[0] or not empty_is_absent):
            values[alias] = found[0]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _invalid_input(exc.errors(include_url=False)[0], spelt) from None


@functools.cache
def _reading(model: type[QueryModel]) -> tuple[tuple[str, frozenset[str] | None, bool], ...]:
    """How each of the model's parameters is read from a query: its name, every spelling of a
    1-n parameter (None: single-valued), and whether given empty it is absent."""
    out = []
    for name, info in model.model_fields.items():
        alias = info.alias or name
        repeated = _repeated(info.metadata)
        spellings = None if repeated is None else frozenset(
            (alias, *(spelling for spelling, _ in repeated.spellings)))
        out.append((alias, spellings, _empty_is_absent(info.annotation)))
    return tuple(out)


def _repeated(metadata: list[Any]) -> Repeated | None:
    # The last: a route's own spellings over the plain Uids' none.
    return next((item for item in reversed(metadata) if isinstance(item, Repeated)), None)


def _empty_is_absent(annotation: Any) -> bool:
    """Text (and lists given as text) given empty is absent; a boolean or choice given empty
    is an error."""
    return annotation is str or get_origin(annotation) is tuple


def _invalid_input(error: ErrorDetails, spelt: dict[str, list[str]]) -> InvalidInput:
    loc = error["loc"]
    ctx = error.get("ctx") or {}
    name = str(ctx.get("at") or (loc[0] if loc else ""))
    if len(loc) > 1 and isinstance(loc[1], int) and name in spelt:
        name = spelt[name][loc[1]]
    if error["type"] == "missing":
        return InvalidInput(f"{name} is required", name)
    if error["type"] == PROBLEM and ctx.get("alone"):
        return InvalidInput(error["msg"], name)
    if error["type"] == "string_too_long":
        return InvalidInput(f"{name}: at most {ctx['max_length']} characters", name)
    if error["type"] == "literal_error":
        expected = str(ctx["expected"]).replace("'", "").replace(" or ", ", ")
        return InvalidInput(f"{name}: expected one of {expected}", name)
    return InvalidInput(f"{name}: {error['msg']}", name)


def query_parameters(model: type[QueryModel]) -> list[dict[str, Any]]:
    """The model's parameters as OpenAPI query parameters, in the model's order, each other
    spelling of a 1-n parameter right after it."""
    schema = openapi_schema(model)
    required = set(schema.get("required", ()))
    parameters = []
    for name, info in model.model_fields.items():
        alias = info.alias or name
        field = dict(schema["properties"][alias])
        parameter: dict[str, Any] = {
            "name": alias, "in": "query", "required": alias in required,
            "description": field.pop("description", ""), "schema": field}
        if field.get("type") == "array":
            parameter.update(style="form", explode=True)
        parameters.append(parameter)
        repeated = _repeated(info.metadata)
        for spelling, description in repeated.spellings if repeated else ():
            parameters.append({**parameter, "name": spelling, "required": False,
                               "description": description})
    return parameters
