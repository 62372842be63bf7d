"""What a viewer session may read: its context's studies, and the local history of their
patients, nothing else.

Every data request of the viewer page carries the session cookie set when the token was
redeemed. The grant it names is looked up once and kept for GRANT_SECONDS, so that scrolling
through a stack does not cost two queries per image; a revoked session therefore stops within
that time. A study outside the grant is 403, without saying whether it exists.

A study of the context that the index did not hold when the grant was read (still on its way,
or nowhere yet) may arrive as another patient's, and then leaves the context
(node/viewing/named_patient.py): a request naming it, and a search across studies, read the
grant afresh while there is such a study (`for_study`), so that the cached grant never shows
it for those seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aiohttp import web

from node.index.patient_queries import studies_of_patients_of
from node.services import NodeServices
from node.viewing import context_json, session_context
from node.viewing.token_secrets import digest

COOKIE = "ngv_session"
GRANT_SECONDS = 2.0
MAX_GRANTS = 4096


@dataclass(frozen=True)
class Grant:
    context_pk: int
    context: dict[str, Any]
    # Study UIDs the session may read: the context's, then its patients' other local studies.
    allowed: frozenset[str] = field(default_factory=frozenset)
    history: tuple[str, ...] = ()
    # Study UID -> the index's patient row, for every readable study that is in the index: a
    # window shows one patient at a time, and this tells whose each study is.
    patient_of: Mapping[str, int] = field(default_factory=dict)
    # The context's studies the index did not hold when the grant was read.
    pending: frozenset[str] = field(default_factory=frozenset)

    @property
    def anonymize(self) -> bool:
        return bool(self.context["options"].get("anonymize"))

    @property
    def features(self) -> dict[str, bool]:
        """The role's permissions less what the request hid; anonymized contexts lose what
        would show identifiers (search by patient, media that carry the patient's name) and
        saving (a viewer that sees no identifiers cannot write an object consistent with
        the patient's)."""
        features = dict(self.context["features"])
        if self.anonymize:
            features["search"] = False
            features["download"] = False
            features["save"] = False
        return features

    def require(self, study_uid: str) -> None:
        if study_uid not in self.allowed:
            raise web.HTTPForbidden(reason="this study is not part of the viewing session")

    def require_feature(self, name: str) -> None:
        if not self.features.get(name):
            raise web.HTTPForbidden(reason=f"the viewing session does not allow {name}")


class GrantCache:
    def __init__(self, services: NodeServices, seconds: float = GRANT_SECONDS) -> None:
        self._services = services
        self._seconds = seconds
        self._grants: dict[str, tuple[float, Grant]] = {}

    async def for_request(self, request: web.Request, fresh: bool = False) -> Grant:
        """The session's grant, or 401 without a live session."""
        cookie = request.cookies.get(COOKIE, "")
        key = digest(cookie) if cookie else ""
        now = self._services.clock.monotonic()
        cached = self._grants.get(key) if key else None
        if cached is not None and not fresh and now - cached[0] < self._seconds:
            return cached[1]
        context_pk = await session_context(self._services, cookie or None)
        if context_pk is None:
            self._grants.pop(key, None)
            raise web.HTTPUnauthorized(reason="no valid viewer session")
        grant = await self._load(context_pk)
        if len(self._grants) >= MAX_GRANTS:
            self._grants = {k: v for k, v in self._grants.items() if now - v[0] < self._seconds}
        self._grants[key] = (now, grant)
        return grant

    async def for_study(self, request: web.Request, study_uid: str | None) -> Grant:
        """The session's grant for a request that reads `study_uid` (None: searches across
        the grant's studies), read afresh when that may be a study that arrived since."""
        grant = await self.for_request(request)
        if grant.pending and (study_uid is None or study_uid in grant.pending):
            grant = await self.for_request(request, fresh=True)
        return grant

    async def live_grant(self, request: web.Request) -> Grant | None:
        """The session's grant read afresh (a page or a state the browser polls must not see
        a revoked session for GRANT_SECONDS more), or None without a live session."""
        try:
            return await self.for_request(request, fresh=True)
        except web.HTTPUnauthorized:
            return None

    def forget(self, request: web.Request) -> None:
        cookie = request.cookies.get(COOKIE, "")
        if cookie:
            self._grants.pop(digest(cookie), None)

    async def _load(self, context_pk: int) -> Grant:
        """The context's studies, then the other local studies of their patients, matched by
        the index's patient row ((PatientID, issuer), or the study alone without PatientID),
        never by a PatientID string. A study still being retrieved brings its history once it
        is in the index."""
        context = await context_json(self._services, context_pk)
        uids = [s["studyInstanceUID"] for s in context["studies"]]
        async with self._services.sessions() as session:
            rows = await studies_of_patients_of(session, uids)
        known = set(uids)
        history = tuple(row.study_uid for row in rows if row.study_uid not in known)
        patient_of = MappingProxyType({row.study_uid: row.patient_pk for row in rows})
        pending = frozenset(uid for uid in known if uid not in patient_of)
        return Grant(context_pk, context, frozenset(known | set(history)), history, patient_of,
                     pending)
