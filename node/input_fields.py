"""Building blocks of the pydantic models that check input from outside: node.toml, the POST
body, the query parameters.

One UID rule (`is_valid_uid`) and one UID schema serve every model and the whole OpenAPI
document, so that what the document promises and what the node accepts cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, Strict, WithJsonSchema
from pydantic_core import PydanticCustomError

from node.instance_record import UID_LIMIT, UID_PATTERN, is_valid_uid

UID_SCHEMA: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": UID_LIMIT,
                              "pattern": UID_PATTERN.pattern}
# The error type of the node's own checks: the message is the problem, as the caller reads it.
PROBLEM = "problem"


def problem(message: str, at: str = "") -> PydanticCustomError:
    """An error with the node's own words; `at` names a part below the checked value (a key of
    an object, a field of a model) that the error is about."""
    return PydanticCustomError(PROBLEM, message, {"at": at} if at else None)


def checked(check: Callable[[Any], str | None]) -> AfterValidator:
    """A validator from a function that says what is wrong with a value (None: nothing)."""

    def validate(value: Any) -> Any:
        found = check(value)
        if found:
            raise problem(found)
        return value

    return AfterValidator(validate)


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
