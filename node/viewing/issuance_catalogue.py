"""Roles and hanging protocols as token issuance sees them: a snapshot at most a second old.

They change rarely (by CLI, possibly in another process) while every token needs both, and both
tables are small: one snapshot of each, never older than CATALOGUE_SECONDS, saves two queries
per token (and per distinct user, which a per-user cache would not). Past half that age the
snapshot is reloaded in the background while requests go on using it, so that under load no
request waits for a reload; only after a quiet spell does one wait. A role missing from the
snapshot is looked up at once, so a role added by the CLI is usable immediately; a removed role
stops being accepted, and a protocol change is seen, within CATALOGUE_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from node.clock import REAL_CLOCK, Clock
from node.viewing.hanging_protocols import Protocol, all_protocols, choose_protocols
from node.viewing.roles import RoleInfo, all_roles, get_role

log = logging.getLogger(__name__)

CATALOGUE_SECONDS = 1.0


@dataclass(frozen=True)
class Applicable:
    """What a token records of the catalogue for one user and role."""

    role: RoleInfo
    scope: str | None
    protocols: list[Protocol]
    # The context's hanging_protocols column: made once per user, role and snapshot, since
    # every token of that user carries the same one.
    protocols_json: dict[str, Any]


class Catalogue:
    def __init__(self, engine: AsyncEngine, clock: Clock = REAL_CLOCK,
                 seconds: float = CATALOGUE_SECONDS) -> None:
        self._engine = engine
        self._clock = clock
        self._seconds = seconds
        self._loaded_at = -seconds
        self._roles: dict[str, RoleInfo] = {}
        self._protocols: list[Protocol] = []
        self._applicable: dict[tuple[str, str], Applicable] = {}
        self._loading = asyncio.Lock()
        self._refresh: asyncio.Task[None] | None = None

    async def role(self, name: str) -> RoleInfo | None:
        await self._fresh()
        role = self._roles.get(name)
        if role is None:
            async with self._engine.connect() as conn:
                role = await get_role(conn, name)
        return role

    async def applicable(self, username: str, role_name: str) -> Applicable | None:
        """The role (None: no such role) and the hanging protocols that apply to the user."""
        await self._fresh()
        found = self._applicable.get((username, role_name))
        if found is not None:
            return found
        role = await self.role(role_name)
        if role is None:
            return None
        scope, protocols = choose_protocols(self._protocols, username, role.name)
        found = Applicable(role, scope, protocols, {
            "scope": scope, "protocols": [p.as_json() for p in protocols]})
        if role.name in self._roles:  # one looked up outside the snapshot is not kept
            self._applicable[(username, role_name)] = found
        return found

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh

    async def _fresh(self) -> None:
        age = self._clock.monotonic() - self._loaded_at
        if age < self._seconds / 2:
            return
        if age < self._seconds:
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.create_task(self._reload_quietly(),
                                                    name="catalogue-refresh")
            return
        await self._reload()

    async def _reload_quietly(self) -> None:
        try:
            await self._reload()
        except Exception as exc:  # the next request past the snapshot's age tries again
            log.warning("reloading roles and hanging protocols failed: %s", exc)

    async def _reload(self) -> None:
        async with self._loading:  # concurrent requests share one reload
            if self._clock.monotonic() - self._loaded_at < self._seconds / 2:
                return
            started = self._clock.monotonic()
            async with self._engine.connect() as conn:
                roles = await all_roles(conn)
                protocols = await all_protocols(conn)
            self._roles = {role.name: role for role in roles}
            self._protocols = protocols
            self._applicable = {}
            self._loaded_at = started
