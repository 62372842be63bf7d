"""Issuing tokens: check the role, resolve the studies, store the viewing context(s).

The token is handed back as soon as the studies are known (from the index, or from the source
nodes' C-FIND answers or timeouts); retrieval of remote studies starts after the context is
committed and runs in the background.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from node import metrics
from node.errors import InvalidInput
from node.index.context_writer import NewContext
from node.render.preload import StudyPreloader
from node.services import NodeServices
from node.viewing import arrange, audit
from node.viewing.arrange import PURPOSE_PRIORITY, Arrangement
from node.viewing.issuance_catalogue import Applicable, Catalogue
from node.viewing.options import ViewingOptions, options_json
from node.viewing.retrievals import RetrievalRegistry
from node.viewing.store import IssueStore, Prepared
from node.viewing.study_resolution import (
    Findings,
    StudyRequest,
    another_patients_study,
    find_remote,
    remote_queries,
    select_sources,
)
from node.viewing.token_secrets import new_token, token_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IssueRequest:
    username: str
    role: str
    studies: StudyRequest
    options: ViewingOptions = field(default_factory=ViewingOptions)
    sticky: str = ""
    # Source nodes named by the request; empty: every configured one.
    source_nodes: tuple[str, ...] = ()
    client_address: str = ""

    def request_json(self) -> dict[str, Any]:
        s = self.studies
        return {
            "studyUID": list(s.study_uids), "accNum": s.accession or None,
            "patientID": s.patient_id or None, "idIssuer": s.issuer or None,
            "historyList": list(s.history_list), "fullPreloadStudy": list(s.preload),
            "sourceNodes": list(self.source_nodes),
        }


class TokenIssuer:
    def __init__(self, services: NodeServices, retrievals: RetrievalRegistry) -> None:
        self._services = services
        self._retrievals = retrievals
        self._store = IssueStore(services.engine)
        self._catalogue = Catalogue(services.engine, services.clock)
        self._preloads = StudyPreloader(services)

    def start(self) -> None:
        """Take part in the preloads any instance queued."""
        self._preloads.start()

    async def close(self) -> None:
        await self._store.close()
        await self._catalogue.close()
        await self._preloads.close()

    def schedule_preload(self, study_uid: str) -> None:
        """Queue a study's preload (a POST import's fullPreloadStudy, once imported)."""
        self._preloads.schedule(study_uid)

    async def preloads_done(self) -> None:
        """Wait until no fullPreloadStudy preload runs (tests and benchmarks)."""
        await self._preloads.wait_idle()

    async def issue_single(self, request: IssueRequest) -> str:
        """The obscurl API: one token."""
        tokens = await self._issue(request, lambda f: [("single", arrange.single(
            request.studies, f))])
        return tokens[0]

    async def issue_monitors(self, request: IssueRequest, monitors: int) -> list[str]:
        """The multimonitor API: the primary monitor's token, and the secondary's for 2."""
        if monitors not in (1, 2):
            raise InvalidInput("numberOfMonitors must be 1 or 2", field="numberOfMonitors")
        if not request.studies.patient_id:
            raise InvalidInput("patientID is required", field="patientID")

        def arrange_monitors(findings: Findings) -> list[tuple[str, Arrangement]]:
            first = arrange.primary(request.studies, findings)
            result = [("primary", first)]
            if monitors == 2:
                result.append(("secondary", arrange.secondary(first, findings)))
            return result

        return await self._issue(request, arrange_monitors)

    async def _issue(
        self, request: IssueRequest,
        arranger: Callable[[Findings], list[tuple[str, Arrangement]]],
    ) -> list[str]:
        config = self._services.config
        sources = select_sources(config, request.source_nodes)
        explicit = bool(request.source_nodes)
        applicable = await self._catalogue.applicable(request.username, request.role)
        if applicable is None:
            raise InvalidInput(f"role: unknown role {request.role!r}", field="role")

        def prepare(findings: Findings) -> Prepared:
            refusal = findings.refusal or another_patients_study(request.studies, findings)
            if refusal is not None:
                raise refusal
            return self._prepare(request, applicable, findings, arranger(findings))

        def prepare_if_local(findings: Findings) -> Prepared | None:
            if sources and remote_queries(findings, request.studies, explicit):
                return None
            return prepare(findings)

        findings, prepared = await self._store.issue(request.studies, prepare_if_local)
        if prepared is None:
            await find_remote(self._services, findings, request.studies, sources,
                              explicit=explicit)
            prepared = prepare(findings)
            await self._store.write(prepared)
        if prepared.remote:
            await self._start_retrievals(prepared.arrangements)
        if prepared.preload:
            self._start_preloads(prepared.arrangements)
        metrics.tokens_issued("get", len(prepared.tokens))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("issued %d token(s): context(s) %s, %d source node(s) failed",
                      len(prepared.tokens), ",".join(map(str, prepared.ids)),
                      len(findings.failed))
        return prepared.tokens

    def _prepare(
        self, request: IssueRequest, applicable: Applicable, findings: Findings,
        arrangements: list[tuple[str, Arrangement]],
    ) -> Prepared:
        """The tokens and their contexts. May run on the store's thread (node/viewing/store.py):
        nothing here touches the event loop."""
        now = self._services.clock.now()
        expires = now + timedelta(seconds=self._services.config.api.token_lifetime_seconds)
        request_json = request.request_json()
        role = applicable.role.name
        common = {
            "username": request.username, "role": role, "request": request_json,
            "options": options_json(request.options), "sources": findings.sources_json(),
            "hanging_protocols": applicable.protocols_json,
            "sticky": request.sticky, "client_address": request.client_address,
            "created_at": now, "expires_at": expires, "redeemed_at": None, "revoked_at": None,
        }
        failed = [f.ae_title for f in findings.failed]
        contexts = []
        tokens = []
        remote = preload = False
        for kind, arrangement in arrangements:
            token = new_token()
            tokens.append(token)
            studies = []
            found = []
            not_found = []
            for position, entry in enumerate(arrangement.entries):
                studies.append(self._row(position, entry))
                study = entry.study
                if study is None:
                    not_found.append(entry.study_uid)
                else:
                    found.append(entry.study_uid)
                    remote = remote or bool(study.source)
                    preload = preload or entry.preload
            contexts.append(NewContext(
                context={**common, "token_hash": token_key(token), "kind": kind,
                         "display": arrangement.display},
                studies=studies,
                audit=audit.row(
                    "issue", username=request.username, role=role,
                    client_address=request.client_address, kind=kind,
                    display=arrangement.display, request=request_json,
                    studies=found, notFound=not_found, failedSources=failed),
            ))
        return Prepared(tokens, arrangements, contexts, remote=remote, preload=preload)

    def _row(self, position: int, entry: arrange.Entry) -> dict[str, Any]:
        study = entry.study
        message = ""
        if study is None:
            state, source = "not-found", ""
        elif study.source and not self._is_source(study.source):
            # Here in part (its retrieval failed) from a node no longer configured: shown
            # as failed, never as the whole study.
            state, source = "failed", study.source
            message = f"{study.source} is no longer a source node: the study is here in part"
        elif study.source:
            state, source = "pending", study.source
        else:
            state, source = self._retrievals.state(entry.study_uid) or "available", ""
        return {
            "position": position, "study_uid": entry.study_uid, "purpose": entry.purpose,
            "preload": entry.preload, "state": state, "source": source,
            "patient_id": study.patient_id if study else "",
            "accession_number": study.accession if study else "",
            "study_date": study.study_date if study else "",
            "description": study.description if study else "", "message": message,
        }

    def _is_source(self, ae_title: str) -> bool:
        return any(node.ae_title == ae_title for node in self._services.config.source_nodes)

    async def _start_retrievals(self, arrangements: list[tuple[str, Arrangement]]) -> None:
        remote = {node.ae_title: node for node in self._services.config.source_nodes}
        entries = [e for _, a in arrangements for e in a.entries
                   if e.study is not None and e.study.source in remote]
        entries.sort(key=lambda e: (PURPOSE_PRIORITY.get(e.purpose, 9), not e.preload))
        seen: set[str] = set()
        for entry in entries:
            if entry.study_uid in seen or entry.study is None:
                continue
            seen.add(entry.study_uid)
            await self._retrievals.ensure(remote[entry.study.source], entry.study_uid)

    def _start_preloads(self, arrangements: list[tuple[str, Arrangement]]) -> None:
        """fullPreloadStudy: render the studies' first images into the render cache, once
        their retrieval (if any) has ended."""
        for _, arrangement in arrangements:
            for entry in arrangement.entries:
                if entry.preload and entry.study is not None:
                    self._preloads.schedule(entry.study_uid,
                                            self._retrievals.running(entry.study_uid))
