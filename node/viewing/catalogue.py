"""Roles and hanging protocols as token issuance sees them, kept for a second.

They change rarely (by CLI, possibly in another process) while every token needs both: a copy
at most CATALOGUE_SECONDS old saves two queries per token. Only what exists is kept, so a role
added by the CLI is usable at once; a removed role stops being accepted within that second.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from node.hanging_protocols import Protocol, applicable_protocols
from node.roles import RoleInfo, get_role

CATALOGUE_SECONDS = 1.0


class Catalogue:
    def __init__(self, seconds: float = CATALOGUE_SECONDS) -> None:
        self._seconds = seconds
        self._roles: dict[str, tuple[float, RoleInfo]] = {}
        self._protocols: dict[tuple[str, str], tuple[float, tuple[str | None,
                                                                  list[Protocol]]]] = {}

    async def role(self, conn: AsyncConnection, name: str) -> RoleInfo | None:
        now = time.monotonic()
        cached = self._roles.get(name)
        if cached is not None and now - cached[0] < self._seconds:
            return cached[1]
        role = await get_role(conn, name)
        if role is None:
            self._roles.pop(name, None)
        else:
            self._forget_old(self._roles, now)
            self._roles[name] = (now, role)
        return role

    async def protocols(
        self, conn: AsyncConnection, username: str, role: str
    ) -> tuple[str | None, list[Protocol]]:
        now = time.monotonic()
        key = (username, role)
        cached = self._protocols.get(key)
        if cached is not None and now - cached[0] < self._seconds:
            return cached[1]
        found = await applicable_protocols(conn, username, role)
        self._forget_old(self._protocols, now)
        self._protocols[key] = (now, found)
        return found

    def _forget_old(self, entries: dict[Any, tuple[float, Any]], now: float) -> None:
        # Bounded by the users seen within a second; swept when it grows.
        if len(entries) > 1024:
            for key in [k for k, (at, _) in entries.items() if now - at >= self._seconds]:
                del entries[key]
