"""Roles: the names callers put in `role=`, each with the viewer features it may use.

A role must exist before a token naming it is issued (the spec requires it to be in the
database); an operator manages them with `python -m node role ...`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from node.errors import Conflict, InvalidInput, NotFound
from node.index.role_queries import delete_role, insert_role, role_row, role_rows

# What a role may be allowed; the request's hide* options can only take features away.
# "save": store instances over STOW-RS into the session's studies (OHIF's saved measurements).
# "layers": see a slide's annotation layers; "annotations": draw, save and delete them (a
# change needs both: a save replaces the shapes of a layer the session must see), and store an
# annotation instance over STOW-RS (with "save").
PERMISSIONS = ("search", "download", "documents", "layers", "annotations", "export", "save")

MAX_NAME = 64


@dataclass(frozen=True)
class RoleInfo:
    name: str
    permissions: tuple[str, ...]


def check_role_name(name: str) -> str:
    if not name or len(name) > MAX_NAME or name != name.strip() or not name.isprintable():
        raise InvalidInput(
            f"a role name is 1 to {MAX_NAME} printable characters without surrounding spaces",
            field="role",
        )
    return name


def parse_permissions(items: Iterable[str]) -> tuple[str, ...]:
    """Permission names, checked against PERMISSIONS, sorted and without repeats."""
    chosen: set[str] = set()
    for item in items:
        name = item.strip()
        if not name:
            continue
        if name not in PERMISSIONS:
            raise InvalidInput(
                f"unknown permission {name!r} (known: {', '.join(PERMISSIONS)})",
                field="permissions",
            )
        chosen.add(name)
    return tuple(sorted(chosen))


async def add_role(
    sessions: async_sessionmaker[AsyncSession], name: str, permissions: Iterable[str]
) -> RoleInfo:
    check_role_name(name)
    allowed = parse_permissions(permissions)
    if not await insert_role(sessions, name, allowed):
        raise Conflict(f"role {name!r} already exists")
    return RoleInfo(name, allowed)


async def remove_role(sessions: async_sessionmaker[AsyncSession], name: str) -> None:
    if not await delete_role(sessions, name):
        raise NotFound(f"no role {name!r}")


async def list_roles(sessions: async_sessionmaker[AsyncSession]) -> list[RoleInfo]:
    async with sessions() as session:
        return await all_roles(session)


async def all_roles(db: AsyncConnection | AsyncSession) -> list[RoleInfo]:
    return [RoleInfo(name, tuple(permissions)) for name, permissions in await role_rows(db)]


async def get_role(db: AsyncConnection | AsyncSession, name: str) -> RoleInfo | None:
    row = await role_row(db, name)
    return None if row is None else RoleInfo(row[0], tuple(row[1]))
