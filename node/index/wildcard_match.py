"""DICOM wildcard matching (`*`, `?`), case-sensitive on every database.

PS3.4 C.2.2.2.4: the characters other than `*` and `?` match exactly. PostgreSQL's LIKE is
case-sensitive, SQLite's is not (for ASCII), so that `*acc1` found `QIDOACC1` on SQLite only.
SQLite's GLOB is case-sensitive and has the DICOM wildcards themselves; each dialect gets its
own operator here, behind one expression the query builder uses.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement, literal
from sqlalchemy.sql.visitors import InternalTraversal

LIKE_ESCAPE = "!"


class WildcardMatch(ColumnElement[bool]):
    """`target` matches the DICOM wildcard `pattern` (SQL: GLOB on SQLite, LIKE elsewhere).

    Both dialects' patterns are bound parameters of the element, so that a statement compiled
    once serves every pattern (SQLAlchemy's statement cache); each dialect renders its own.
    """

    type = Boolean()
    inherit_cache = True
    _traverse_internals = [
        ("target", InternalTraversal.dp_clauseelement),
        ("like_value", InternalTraversal.dp_clauseelement),
        ("glob_value", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, target: Any, pattern: str) -> None:
        self.target = target
        self.like_value = literal(like_pattern(pattern))
        self.glob_value = literal(glob_pattern(pattern))


def like_pattern(value: str) -> str:
    """The pattern for SQL LIKE with escape LIKE_ESCAPE."""
    out = []
    for char in value:
        if char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        elif char in (LIKE_ESCAPE, "%", "_"):
            out.append(LIKE_ESCAPE + char)
        else:
            out.append(char)
    return "".join(out)


def glob_pattern(value: str) -> str:
    """The pattern for SQLite's GLOB: the wildcards as they are, `[` as a one-character set
    (GLOB's only other special character outside `*` and `?`)."""
    return value.replace("[", "[[]")


@compiles(WildcardMatch)
def _like(element: WildcardMatch, compiler: SQLCompiler, **kw: Any) -> str:
    clause = element.target.like(element.like_value, escape=LIKE_ESCAPE)
    return compiler.process(clause, **kw)


@compiles(WildcardMatch, "sqlite")
def _glob(element: WildcardMatch, compiler: SQLCompiler, **kw: Any) -> str:
    clause = element.target.op("GLOB", is_comparison=True)(element.glob_value)
    return compiler.process(clause, **kw)
