"""Building blocks of the pydantic models that check input from outside: node.toml, the POST
body, the query parameters.

One UID rule (`is_valid_uid`) and one UID schema serve every model and the whole OpenAPI
document, so that what the document promises and what the node accepts cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    Strict,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from node.ingest.instance_record import UID_LIMIT, UID_PATTERN, is_valid_uid

UID_SCHEMA: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": UID_LIMIT,
                              "pattern": UID_PATTERN.pattern}
# The error type of the node's own checks: the message is the problem, as the caller reads it.
PROBLEM = "problem"


def problem(message: str, at: str = "", *, alone: bool = False) -> PydanticCustomError:
    """An error with the node's own words; `at` names a part below the checked value (a key of
    an object, a field of a model) that the error is about; `alone`: the message says it all
    (it is about several fields), and is not put after the field's name."""
    context: dict[str, Any] = {"at": at} if at else {}
    if alone:
        context["alone"] = True
    return PydanticCustomError(PROBLEM, message, context or None)


def checked(check: Callable[[Any], str | None]) -> AfterValidator:
    """A validator from a function that says what is wrong with a value (None: nothing)."""

    def validate(value: Any) -> Any:
        found = check(value)
        if found:
            raise problem(found)
        return value

    return AfterValidator(validate)


@dataclass(frozen=True)
class TextField:
    """Annotated metadata of a text field: a string (never a number taken for one) of at most
    `max_length` characters, then the subclass's `validate`; its JSON schema adds
    `schema_extra()`."""

    max_length: int = 64

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler
                                     ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            self.validate, core_schema.str_schema(strict=True, max_length=self.max_length))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {**handler(schema), **self.schema_extra()}

    def validate(self, value: str) -> str:
        return value

    def schema_extra(self) -> dict[str, Any]:
        return {}


def _uid_problem(value: str) -> str | None:
    return None if is_valid_uid(value) else "not a valid DICOM UID"


Uid = Annotated[str, Strict(), checked(_uid_problem), WithJsonSchema(UID_SCHEMA)]


def field_path(loc: Sequence[int | str], ctx: dict[str, Any] | None = None) -> str:
    """A pydantic error location as the caller spells it: `studies[0].series[2].file`, with
    the part a check named (`problem(..., at=...)`) appended."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    at = (ctx or {}).get("at", "")
    if at:
        path += at if at.startswith("[") or not path else f".{at}"
    return path
