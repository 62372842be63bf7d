"""Roles: the names callers put in `role=`, each with the viewer features it may use.

A role must exist before a token naming it is issued (the spec requires it to be in the
database); an operator manages them with `python -m node role ...`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from node.errors import Conflict, InvalidInput, NotFound
from node.index.viewing_models import Role

# What a role may be allowed; the request's hide* options can only take features away.
# "save": store instances over STOW-RS into the session's studies (OHIF's saved measurements).
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
    async with sessions() as session:
        session.add(Role(name=name, permissions=list(allowed), created_at=datetime.now(UTC)))
        try:
            await session.commit()
        except IntegrityError as exc:
            raise Conflict(f"role {name!r} already exists") from exc
    return RoleInfo(name, allowed)


async def remove_role(sessions: async_sessionmaker[AsyncSession], name: str) -> None:
    async with sessions() as session:
        result = await session.execute(delete(Role).where(Role.name == name))
        await session.commit()
    if getattr(result, "rowcount", 0) == 0:
        raise NotFound(f"no role {name!r}")


async def list_roles(sessions: async_sessionmaker[AsyncSession]) -> list[RoleInfo]:
    async with sessions() as session:
        rows = (await session.scalars(select(Role).order_by(Role.name))).all()
    return [RoleInfo(row.name, tuple(row.permissions)) for row in rows]


async def all_roles(db: AsyncConnection | AsyncSession) -> list[RoleInfo]:
    rows = (await db.execute(select(Role.name, Role.permissions).order_by(Role.name))).all()
    return [RoleInfo(row[0], tuple(row[1])) for row in rows]


async def get_role(db: AsyncConnection | AsyncSession, name: str) -> RoleInfo | None:
    row = (await db.execute(select(Role.name, Role.permissions).where(Role.name == name))).first()
    if row is None:
        return None
    return RoleInfo(row[0], tuple(row[1]))
