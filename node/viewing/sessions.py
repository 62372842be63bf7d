"""Redeeming a token for a viewer session, and what a session may then read.

Redemption is one conditional UPDATE (not yet redeemed, not revoked, not expired): of two
simultaneous redemptions of the same token exactly one wins, whatever the number of node
instances sharing the database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from node import metrics
from node.errors import NotFound
from node.index.context_queries import context_with_studies
from node.index.recycling import mark_context_used
from node.index.viewer_session_queries import (
    add_viewer_session,
    claim_redemption,
    live_session_context,
)
from node.services import NodeServices
from node.viewing import audit
from node.viewing.named_patient import studies_of_other_patients
from node.viewing.options import ViewingOptions
from node.viewing.roles import get_role
from node.viewing.token_secrets import digest, looks_like_token, new_secret, token_keys

if TYPE_CHECKING:
    from node.index.viewing_models import ViewingContext

log = logging.getLogger(__name__)

Outcome = Literal["ok", "unknown", "used", "expired", "revoked"]


@dataclass(frozen=True)
class Redemption:
    outcome: Outcome
    cookie: str = ""
    context_pk: int | None = None
    sticky: str = ""
    max_age: int = 0


def utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def redeem(services: NodeServices, token: str, client_address: str) -> Redemption:
    if not looks_like_token(token):
        metrics.token_refused("unknown")
        return Redemption("unknown")
    keys = token_keys(token)
    now = services.clock.now()
    lifetime = services.config.api.session_lifetime_seconds
    async with services.sessions() as session:
        won, context = await claim_redemption(session, keys, now)
        if not won or context is None:
            outcome = _refusal(context, now)
            if context is not None:
                audit.record(session, "redeem-refused", username=context.username,
                             role=context.role, context_pk=context.id,
                             client_address=client_address, reason=outcome)
                await session.commit()
            metrics.token_refused(outcome)
            log.info("token refused (%s)%s", outcome,
                     f" for context {context.id}" if context is not None else "")
            return Redemption(outcome)
        cookie = new_secret()
        add_viewer_session(session, digest(cookie), context, client_address, now,
                           now + timedelta(seconds=lifetime))
        audit.record(session, "redeem", username=context.username, role=context.role,
                     context_pk=context.id, client_address=client_address,
                     issuedTo=context.client_address)
        await mark_context_used(session, context.id)  # opened: recycled last (storage quota)
        await session.commit()
    metrics.token_redeemed()
    log.info("token redeemed: context %d", context.id)
    return Redemption("ok", cookie, context.id, context.sticky, lifetime)


def _refusal(context: ViewingContext | None, now: datetime) -> Outcome:
    if context is None:
        return "unknown"
    if context.revoked_at is not None:
        return "revoked"
    if context.redeemed_at is not None:
        return "used"
    if utc(context.expires_at) <= now:
        return "expired"
    return "used"


async def session_context(services: NodeServices, cookie: str | None) -> int | None:
    """The context a session cookie gives access to, or None for no, an expired or a revoked
    session."""
    if not cookie or not looks_like_token(cookie):
        return None
    return await live_session_context(services.sessions, digest(cookie), services.clock.now())


async def context_json(services: NodeServices, context_pk: int) -> dict[str, Any]:
    """The viewer's view of a context: what to open, each study's state, every option."""
    async with services.sessions() as session:
        context = await context_with_studies(session, context_pk)
        if context is None:
            raise NotFound("viewing context not found")
        return await _as_json(session, context)


def _anonymized(request: dict[str, Any]) -> dict[str, Any]:
    """The request without what a viewer would show of the patient; the audit table keeps
    what was asked. A POST request's studies keep only their UIDs: its patient data, file
    paths and folder may all name the patient."""
    out = {**request, "patientID": None, "idIssuer": None, "accNum": None}
    if "studies" in out:
        out["studies"] = [{"studyInstanceUID": s.get("studyInstanceUID")}
                          for s in out["studies"]]
    if "folder" in out:
        out["folder"] = None
    return out


def _anonymized_sources(sources: dict[str, Any]) -> dict[str, Any]:
    """The sources' answers without where a POST import's failures were and their messages:
    a folder's file paths may name the patient (a folder per patient), and a message names
    the file. The counts and each failure's UIDs stay."""
    progress = sources.get("import")
    if not isinstance(progress, dict) or not progress.get("failures"):
        return sources
    failures = [{k: v for k, v in failure.items() if k not in ("where", "message")}
                for failure in progress["failures"]]
    return {**sources, "import": {**progress, "failures": failures}}


async def _as_json(session: AsyncSession, context: ViewingContext) -> dict[str, Any]:
    role = await get_role(session, context.role)
    permissions = role.permissions if role else ()
    options = context.options
    anonymize = bool(options.get("anonymize"))
    viewing = ViewingOptions(
        anonymize=anonymize, hide_search=bool(options.get("hideSearch")),
        hide_documents=bool(options.get("hideDocuments")),
        hide_layers=bool(options.get("hideLayers")),
    )
    request = _anonymized(context.request) if anonymize else dict(context.request)
    others = await studies_of_other_patients(
        session, context.request, [(row.study_uid, row.purpose) for row in context.studies])
    studies = []
    for row in context.studies:
        if row.study_uid in others:
            continue
        studies.append({
            "studyInstanceUID": row.study_uid, "purpose": row.purpose, "preload": row.preload,
            "state": row.state, "source": row.source or None,
            "patientID": None if anonymize else (row.patient_id or None),
            "accessionNumber": None if anonymize else (row.accession_number or None),
            "studyDate": row.study_date or None, "studyDescription": row.description or None,
            "message": row.message or None,
            "instancesReceived": row.instances_received,
            "instancesAnnounced": row.instances_announced or None,
        })
    return {
        "monitor": context.kind, "display": context.display,
        "username": context.username, "role": context.role,
        "permissions": list(permissions), "features": viewing.features(permissions),
        "request": request,
        # The slide the token names is its barcode (the case's accession number and more).
        "options": {**options, "containerIdentifier": None} if anonymize else options,
        "sticky": context.sticky or None,
        "studies": studies,
        "notFound": all(s["state"] == "not-found" for s in studies),
        "sources": (_anonymized_sources(context.sources) if anonymize and context.sources
                    else context.sources),
        "hangingProtocols": context.hanging_protocols,
        "createdAt": utc(context.created_at).isoformat(),
        "expiresAt": utc(context.expires_at).isoformat(),
    }
