"""Hanging protocols: a layout (rows x columns) and rules placing series in its cells.

Protocols belong to a user, to a role, or to everyone (global). A viewing context uses the
user's protocols when there are any, else the role's, else the global ones, as the spec says.
A rule matches a series by modality, body part and description (with `*`/`?` wildcards, any
case); the first matching rule decides the series' cell.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from node.errors import Conflict, InvalidInput, NotFound
from node.index.protocol_queries import (
    delete_protocol,
    insert_protocol,
    protocol_rows,
    protocol_rows_by_owner,
    protocol_rows_for,
)

SCOPES = ("user", "role", "global")
# Rule keys as written on the command line, and as stored / handed to the viewer.
RULE_KEYS = {"modality": "modality", "body_part": "bodyPart", "description": "description"}
MAX_CELLS_PER_SIDE = 8


@dataclass(frozen=True)
class Rule:
    cell: int
    modality: str = ""
    body_part: str = ""
    description: str = ""

    def matches(self, modality: str, body_part: str, description: str) -> bool:
        return (
            _match(self.modality, modality)
            and _match(self.body_part, body_part)
            and _match(self.description, description)
        )

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"cell": self.cell}
        for key, value in (("modality", self.modality), ("bodyPart", self.body_part),
                           ("description", self.description)):
            if value:
                data[key] = value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rule:
        return cls(int(data["cell"]), str(data.get("modality", "")),
                   str(data.get("bodyPart", "")), str(data.get("description", "")))


@dataclass(frozen=True)
class Protocol:
    id: int
    name: str
    scope: str
    owner: str
    rows: int
    columns: int
    rules: tuple[Rule, ...]

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "scope": self.scope, "owner": self.owner,
                "rows": self.rows, "columns": self.columns,
                "rules": [rule.as_json() for rule in self.rules]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Protocol:
        """A protocol as `as_json` wrote it (a viewing context's snapshot); KeyError,
        TypeError or ValueError for anything else."""
        return cls(int(data["id"]), str(data["name"]), str(data["scope"]),
                   str(data.get("owner", "")), int(data["rows"]), int(data["columns"]),
                   tuple(Rule.from_json(rule) for rule in data["rules"]))

    def place(self, series: Sequence[tuple[str, str, str]]) -> dict[int, int]:
        """Which cell each series (modality, body part, description) goes to, by index in
        `series`; a series no rule matches gets no cell."""
        placed: dict[int, int] = {}
        for index, (modality, body_part, description) in enumerate(series):
            for rule in self.rules:
                if rule.matches(modality, body_part, description):
                    placed[index] = rule.cell
                    break
        return placed


def snapshot_protocols(snapshot: dict[str, Any]) -> list[Protocol]:
    """The protocols of a viewing context's snapshot ({"scope": ..., "protocols": [...]});
    an entry that is not a protocol is skipped."""
    found = []
    for item in snapshot.get("protocols") or []:
        try:
            found.append(Protocol.from_json(item))
        except (KeyError, TypeError, ValueError):
            continue
    return found


def _match(pattern: str, value: str) -> bool:
    return not pattern or fnmatch.fnmatchcase(value.upper(), pattern.upper())


def parse_rule(text: str) -> Rule:
    """`CELL:key=value[,key=value...]`, keys modality, body_part, description; CELL counts
    from 1, row by row."""
    cell_text, sep, criteria = text.partition(":")
    if not sep or not cell_text.strip().isdigit():
        raise InvalidInput(f"rule {text!r}: expected CELL:key=value[,key=value...]", "rule")
    values: dict[str, str] = {}
    for part in criteria.split(","):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in RULE_KEYS or not value.strip():
            raise InvalidInput(
                f"rule {text!r}: each criterion is key=value with key one of "
                f"{', '.join(RULE_KEYS)}", "rule")
        values[key] = value.strip()
    return Rule(int(cell_text), **values)


def _check(name: str, scope: str, owner: str, rows: int, columns: int,
           rules: Sequence[Rule]) -> None:
    if not name or len(name) > 64:
        raise InvalidInput("a protocol name is 1 to 64 characters", "name")
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}", "scope")
    if (scope == "global") != (owner == ""):
        raise InvalidInput("a user or role protocol names its owner; a global one has none",
                           "owner")
    for label, value in (("rows", rows), ("columns", columns)):
        if not 1 <= value <= MAX_CELLS_PER_SIDE:
            raise InvalidInput(f"{label} must be between 1 and {MAX_CELLS_PER_SIDE}", label)
    for rule in rules:
        if not 1 <= rule.cell <= rows * columns:
            raise InvalidInput(f"rule cell {rule.cell} is outside the {rows}x{columns} layout",
                               "rule")


async def add_protocol(
    sessions: async_sessionmaker[AsyncSession], name: str, scope: str, owner: str, rows: int,
    columns: int, rules: Sequence[Rule],
) -> Protocol:
    _check(name, scope, owner, rows, columns, rules)
    row = await insert_protocol(sessions, name, scope, owner, rows, columns,
                                [rule.as_json() for rule in rules])
    if row is None:
        raise Conflict(f"a {scope} protocol named {name!r} already exists")
    return _from_row(row)


async def remove_protocol(
    sessions: async_sessionmaker[AsyncSession], name: str, scope: str, owner: str
) -> None:
    if not await delete_protocol(sessions, name, scope, owner):
        raise NotFound(f"no {scope} protocol named {name!r}")


async def list_protocols(sessions: async_sessionmaker[AsyncSession]) -> list[Protocol]:
    return [_from_row(r) for r in await protocol_rows_by_owner(sessions)]


async def applicable_protocols(
    db: AsyncConnection | AsyncSession, username: str, role: str
) -> tuple[str | None, list[Protocol]]:
    """The protocols a viewing context uses and where they came from: the user's, else the
    role's, else the global ones; (None, []) when there are none at all."""
    rows = await protocol_rows_for(db, username, role)
    return choose_protocols([_from_row(r) for r in rows], username, role)


async def all_protocols(db: AsyncConnection | AsyncSession) -> list[Protocol]:
    """Every stored protocol, by name (what choose_protocols picks from)."""
    return [_from_row(r) for r in await protocol_rows(db)]


def choose_protocols(
    protocols: Sequence[Protocol], username: str, role: str
) -> tuple[str | None, list[Protocol]]:
    """applicable_protocols' choice among `protocols` (in name order)."""
    owners = {"user": username, "role": role}
    for scope in SCOPES:
        chosen = [p for p in protocols
                  if p.scope == scope and (scope == "global" or p.owner == owners[scope])]
        if chosen:
            return scope, chosen
    return None, []


def _from_row(r: Any) -> Protocol:
    return Protocol(r[0], r[1], r[2], r[3], r[4], r[5],
                    tuple(Rule.from_json(rule) for rule in r[6]))

