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
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from node.hanging_protocols import Protocol, all_protocols, choose_protocols
from node.roles import RoleInfo, all_roles, get_role

log = logging.getLogger(__name__)

CATALOGUE_SECONDS = 1.0


class Catalogue:
    def __init__(self, engine: AsyncEngine, seconds: float = CATALOGUE_SECONDS) -> None:
        self._engine = engine
        self._seconds = seconds
        self._loaded_at = -seconds
        self._roles: dict[str, RoleInfo] = {}
        self._protocols: list[Protocol] = []
        self._loading = asyncio.Lock()
        self._refresh: asyncio.Task[None] | None = None

    async def role(self, name: str) -> RoleInfo | None:
        await self._fresh()
        role = self._roles.get(name)
        if role is None:
            async with self._engine.connect() as conn:
                role = await get_role(conn, name)
        return role

    async def protocols(self, username: str, role: str) -> tuple[str | None, list[Protocol]]:
        await self._fresh()
        return choose_protocols(self._protocols, username, role)

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh

    async def _fresh(self) -> None:
        age = time.monotonic() - self._loaded_at
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
            if time.monotonic() - self._loaded_at < self._seconds / 2:
                return
            started = time.monotonic()
            async with self._engine.connect() as conn:
                roles = await all_roles(conn)
                protocols = await all_protocols(conn)
            self._roles = {role.name: role for role in roles}
            self._protocols = protocols
            self._loaded_at = started
