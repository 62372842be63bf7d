"""The viewing context of a POST request, and the progress of its import written into it.

The context, its import job (node/sources/import_jobs.py) and, when the request carries cloud
keys or WADO headers, their sealed copy (node/sources/sealed_secrets.py) are committed together,
then the token is handed back. The import's progress is written into the context
(`sources["import"]`, and each study's state) at most every `WRITE_INTERVAL` seconds and once at
the end, together with each object's outcome (`import_outcomes`), so that the viewer can show
what is arriving and what failed, and a resumed import knows what is done. A folder's studies
are only known from its files: their rows are added as they appear. The context keeps the
request without its secrets; the outcomes and the sealed secrets are deleted once it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from node import metrics
from node.errors import Conflict, InvalidInput
from node.index.import_queries import add_import_context, write_import_progress
from node.index.study_lookup import StudyLookup
from node.services import NodeServices
from node.sources.plan import ImportPlan
from node.sources.progress import ImportProgress, ItemOutcome
from node.sources.request import OpenRequest
from node.sources.sealed_secrets import CredentialVault
from node.viewing import audit
from node.viewing.hanging_protocols import applicable_protocols
from node.viewing.options import ViewingOptions
from node.viewing.roles import get_role
from node.viewing.token_secrets import new_token, token_key

log = logging.getLogger(__name__)

WRITE_INTERVAL = 0.5
# The jobs table's kind of a POST import; its key is the viewing context's id.
JOB_KIND = "post-import"


async def check_role(services: NodeServices, name: str) -> None:
    """Before any path is looked at: an unknown role is refused first."""
    async with services.sessions() as session:
        if await get_role(session, name) is None:
            raise InvalidInput(f"role: unknown role {name!r}", field="role")


def context_options(plan: ImportPlan) -> dict[str, Any]:
    """The request's opening parameters over the GET API's defaults. Documents differ: a
    request that lists a document file itself (a PDF) wants it shown, so `hideDocuments`
    defaults to false for it; other requests (a folder, a WADO study) keep the GET default,
    true, as their documents are only attached to what they name."""
    opening = plan.request.opening
    hide_documents = opening.hide_documents
    if hide_documents is None:
        hide_documents = not plan.request.lists_documents()
    options = ViewingOptions(
        anonymize=opening.anonymize, hide_search=opening.hide_search,
        hide_documents=hide_documents, hide_layers=opening.hide_layers,
        annotation_visibility="USER" if opening.annotation_visibility == "USER" else "ALL")
    return {**options.as_json(), "collapsePreviews": opening.collapse_previews}


async def refuse_another_patients_study(session: AsyncSession, request: OpenRequest) -> None:
    """Conflict when the request names a study with a patientID and the index holds that
    study for another PatientID. As with the GET API (study_resolution.another_patients_study)
    it is the caller's wrong-patient error: the import would be refused instance by instance
    (a study is one patient's), and the session would open the index's copy, the other
    patient's images, with the rest of that patient's studies."""
    claimed = {study.study_uid: study for study in request.studies if study.patient_id}
    for uid, patient_id, *_ in await StudyLookup(session).by_uids(list(claimed)):
        study = claimed[uid]
        if patient_id != study.patient_id:
            raise Conflict(f"{study.where}.patientID: study {uid} is another patient's than "
                           "patientID")


async def issue_context(services: NodeServices, plan: ImportPlan, progress: ImportProgress,
                        client_address: str = "", vault: CredentialVault | None = None
                        ) -> tuple[str, int]:
    """Store the context of a checked request with its queued import job (and sealed
    secrets); (token, context id). The role must exist."""
    request = plan.request
    now = services.clock.now()
    lifetime = timedelta(seconds=services.config.api.token_lifetime_seconds)
    token = new_token()
    async with services.sessions() as session:
        role = await get_role(session, request.role)
        if role is None:
            raise InvalidInput(f"role: unknown role {request.role!r}", field="role")
        await refuse_another_patients_study(session, request)
        scope, protocols = await applicable_protocols(session, request.username, role.name)
        request_json = request.as_json()
        expires_at = now + lifetime
        context_pk = await add_import_context(session, dict(
            token_hash=token_key(token), kind="single", username=request.username,
            role=role.name, display="studies", request=request_json,
            options=context_options(plan), sources={"import": progress.as_json()},
            hanging_protocols={"scope": scope, "protocols": [p.as_json() for p in protocols]},
            sticky="", client_address=client_address[:64], created_at=now,
            expires_at=expires_at,
        ), [_study_row(position, uid, plan) for position, uid in enumerate(plan.study_uids)],
            JOB_KIND)
        secrets = request.secret_fields()
        if secrets:
            vault = vault or CredentialVault(services.config.credentials_key_path)
            vault.store(session, context_pk, secrets, expires_at)
        audit.record(session, "issue", username=request.username, role=role.name,
                     context_pk=context_pk, client_address=client_address, kind="post",
                     request=request_json, studies=list(plan.study_uids))
        await session.commit()
    metrics.tokens_issued("post")
    log.info("issued a POST token: context %d, %d source(s)", context_pk, len(plan.sources))
    return token, context_pk


def _study_row(position: int, study_uid: str, plan: ImportPlan) -> dict[str, Any]:
    entry = next((s for s in plan.request.studies if s.study_uid == study_uid), None)
    return dict(
        position=position, study_uid=study_uid, purpose="open",
        preload=study_uid in plan.request.opening.full_preload_study,
        state="pending", source="",
        patient_id=entry.patient_id if entry else "",
        accession_number=entry.accession if entry else "",
        study_date=entry.study_date if entry else "",
        description=entry.description if entry else "",
    )


class ContextProgress:
    """Writes an import's progress into its context, throttled."""

    def __init__(self, services: NodeServices, context_pk: int) -> None:
        self.services = services
        self.context_pk = context_pk
        self._pending: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[None] | None = None
        self._dirty = False

    def attach(self, progress: ImportProgress) -> None:
        progress.on_change = self._changed

    def _changed(self, progress: ImportProgress) -> None:
        self._dirty = True
        if self._pending is None and not progress.finished:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(WRITE_INTERVAL, self._start_write, progress)

    def _start_write(self, progress: ImportProgress) -> None:
        self._pending = None
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write_logged(progress, final=False))
        else:
            # A write is still running: try again a little later.
            self._changed(progress)

    async def _write_logged(self, progress: ImportProgress, final: bool) -> None:
        try:
            await self.write(progress, final)
        except Exception as exc:  # progress is best effort; the import goes on
            log.warning("context %d: progress not written (%s)", self.context_pk,
                        type(exc).__name__)

    async def finish(self, progress: ImportProgress) -> None:
        """The last write, after any running one."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await self._writing
        await self._write_logged(progress, final=True)

    async def write(self, progress: ImportProgress, final: bool) -> None:
        self._dirty = False
        snapshot = progress.as_json()
        outcomes = progress.take_unsaved()
        try:
            await self._write(progress, snapshot, outcomes, final)
        except BaseException:
            progress.unsaved[:0] = outcomes  # saved with the next write instead
            raise

    async def _write(self, progress: ImportProgress, snapshot: dict[str, Any],
                     outcomes: list[ItemOutcome], final: bool) -> None:
        # Once it ended, nothing is left to resume: what only a resumed import needed goes.
        await write_import_progress(
            self.services.sessions, self.context_pk, {"import": snapshot},
            [(o.item, o.outcome, o.study_uid, o.sop_uid, o.message) for o in outcomes],
            forget=final and progress.state in ("done", "stopped"),
            study_uids=list(progress.studies),
            state_of=lambda study_uid: _state(progress, study_uid, final),
            dropped=[uid for uid, counts in progress.studies.items()
                     if final and counts.another_patients])


def _state(progress: ImportProgress, study_uid: str, final: bool) -> tuple[str, str]:
    counts = progress.studies.get(study_uid)
    done = counts.done if counts else 0
    failed = counts.failed if counts else 0
    first_failure = next((f["message"] for f in progress.failures
                          if f.get("studyInstanceUID") == study_uid), "")
    if progress.state == "interrupted":
        return (("retrieving" if done or failed else "pending"),
                "import interrupted (its node stopped); the next node to run it resumes it")
    if not final:
        return ("retrieving" if done or failed else "pending"), ""
    if progress.state == "stopped":
        # Why the whole import failed is a failure of no study in particular.
        reason = first_failure or next((f["message"] for f in progress.failures
                                        if not f.get("studyInstanceUID")), "the import failed")
        return ("available" if done else "failed"), reason
    if done and failed:
        return "available", f"{failed} of {done + failed} instances failed: {first_failure}"
    if done:
        return "available", ""
    if failed:
        return "failed", first_failure
    return "not-found", "nothing was found for this study"
