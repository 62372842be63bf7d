"""POST imports as jobs of the jobs table (node/process/jobs.py), so that a crash does not lose one.

The POST handler commits the viewing context with a queued `post-import` job (its key is the
context's id). Any instance's runner claims it, keeps it alive with heartbeats and writes its
progress into the context; if that instance dies, the job's heartbeat goes stale and the next
runner to look (another instance, or this one restarted) claims it again. The resumed run
rebuilds the request from the context (and its sealed secrets, node/sources/sealed_secrets.py),
counts the objects whose outcomes the earlier run wrote (`import_outcomes`) without fetching them,
and imports the rest. An orderly shutdown hands running imports back to the queue at once. Once an
import has ended, the studies its request names in `fullPreloadStudy` and that it brought in are
handed to `preload`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from node.errors import InvalidInput
from node.index.import_queries import import_outcomes, import_request
from node.process.background import Periodic, to_completion
from node.process.jobs import GIVEN_UP, ClaimedJob, JobBoard, JobRunner, worker_name
from node.services import NodeServices
from node.sources.base import Source
from node.sources.pipeline import FetchPolicy, Importer, SlideRegistry
from node.sources.plan import plan_import
from node.sources.post_context import JOB_KIND, ContextProgress
from node.sources.progress import ImportProgress, ItemOutcome
from node.sources.request import parse_request, with_secrets
from node.sources.sealed_secrets import CredentialVault
from node.sources.storage_mapping import load_mappings

log = logging.getLogger(__name__)

# Expired tokens' sealed credentials are deleted at start and this often while running.
SWEEP_SECONDS = 60.0


class ImportJobs:
    """This instance's share of the POST imports of every instance."""

    def __init__(self, services: NodeServices, slides: SlideRegistry | None = None,
                 preload: Callable[[str], None] | None = None) -> None:
        self.services = services
        self.slides = slides
        self.preload = preload
        self.vault = CredentialVault(services.config.credentials_key_path)
        settings = services.config.jobs
        board = JobBoard(services.engine, settings, worker_name(services.config.instance_name),
                         services.clock)
        self._runner = JobRunner(board, settings, JOB_KIND, self._import,
                                 services.config.sources.imports_at_once,
                                 finished=self._finished)
        self._sweeper = Periodic(self._sweep, SWEEP_SECONDS, "sweeping sealed credentials")

    def start(self) -> None:
        """Take part: claim queued imports and those an instance that died left."""
        self._runner.start()
        self._sweeper.start()

    def wake(self) -> None:
        """An import was queued here: claim it now rather than at the next poll."""
        self._runner.wake()

    async def _sweep(self) -> None:
        await self.vault.sweep(self.services.sessions)

    async def _finished(self, job: ClaimedJob, state: str, outcome: str) -> None:
        """An import whose instance died each time it ran is given up (node/process/jobs.py): its
        context says so and keeps what was imported; nothing is left to resume."""
        if outcome != GIVEN_UP:
            return  # the import wrote its own end
        context_pk = int(job.key)
        progress = ImportProgress()
        progress.restore(await self._outcomes(context_pk))
        progress.fail("request", f"import given up after {job.attempts - 1} tries: its node "
                      "stopped each time it ran", counted=False)
        progress.set_state("stopped")
        await ContextProgress(self.services, context_pk).finish(progress)

    async def _outcomes(self, context_pk: int) -> list[ItemOutcome]:
        return [ItemOutcome(*row) for row in await import_outcomes(self.services.sessions,
                                                                   context_pk)]

    async def _import(self, job: ClaimedJob) -> tuple[str, str]:
        context_pk = int(job.key)
        row = await import_request(self.services.sessions, context_pk)
        outcomes = await self._outcomes(context_pk)
        if row is None:
            return "failed", "its viewing context no longer exists"
        if ((row.sources or {}).get("import") or {}).get("state") == "done":
            return "done", "already done"  # finished just before its instance stopped
        progress = ImportProgress()
        progress.restore(outcomes)
        writer = ContextProgress(self.services, context_pk)
        writer.attach(progress)
        resumed = job.attempts > 1
        if resumed:
            log.info("context %d: resuming an import (%d objects already done)", context_pk,
                     len(outcomes))
        try:
            sources = await self._sources(context_pk, dict(row.request or {}))
            await Importer(self.services, FetchPolicy.from_config(self.services.config),
                           self.slides).run(sources, progress, resumed)
        except asyncio.CancelledError:
            # Stopped with its instance: the job goes back to the queue (perhaps before the
            # importer started, which would otherwise have said so itself).
            if not progress.finished:
                progress.set_state("interrupted")
            await to_completion(writer.finish(progress))
            raise
        except InvalidInput as exc:
            # Its request cannot be rebuilt (its secrets expired with the token, a mapping or
            # a file is gone): the whole import fails, with the reason on each study.
            _fail_request(progress, dict(row.request or {}), exc)
            progress.set_state("done")
        except Exception as exc:  # reported in the context, never lost silently
            log.warning("context %d: import failed (%s)", context_pk, type(exc).__name__)
            progress.fail("request", f"internal error ({type(exc).__name__})", counted=False)
            progress.set_state("stopped")
        await writer.finish(progress)
        self._preload_imported(dict(row.request or {}), progress)
        log.info("context %d: import %s, %d of %d instances, %d failed", context_pk,
                 progress.state, progress.done, progress.total, progress.failed)
        return ("done" if progress.state == "done" else "failed",
                f"{progress.done} of {progress.total} imported, {progress.failed} failed")

    def _preload_imported(self, request_json: dict[str, Any], progress: ImportProgress
                          ) -> None:
        """fullPreloadStudy: only studies this import brought in (a folder's studies are
        known only now); a UID naming anything else is no reason to render it."""
        if self.preload is None:
            return
        opening = request_json.get("openingParameters") or {}
        for study_uid in opening.get("fullPreloadStudy") or ():
            counts = progress.studies.get(study_uid)
            if counts is not None and counts.done:
                self.preload(study_uid)

    async def _sources(self, context_pk: int, request_json: dict[str, Any]
                       ) -> tuple[Source, ...]:
        """The request's sources, rebuilt from what the context keeps."""
        secrets: dict[str, Any] = {}
        needs_secrets = any("storage" in study for study in request_json.get("studies", ()))
        if needs_secrets:
            secrets = await self.vault.load(self.services.sessions, context_pk) or {}
        try:
            request = parse_request(with_secrets(request_json, secrets))
        except InvalidInput as exc:
            if needs_secrets and not secrets:
                raise InvalidInput("the request's credentials are no longer kept (its token "
                                   "expired before the import could finish)",
                                   field=exc.field) from None
            raise
        mappings = await load_mappings(self.services.sessions)
        plan = await asyncio.to_thread(plan_import, request, mappings, self.services.config)
        return plan.sources

    async def close(self) -> None:
        await self._sweeper.stop()
        await self._runner.close()

    async def wait_idle(self) -> None:
        """Until no import is queued or running on any instance (tests, orderly stops)."""
        await self._runner.wait_idle()


def _fail_request(progress: ImportProgress, request_json: dict[str, Any], exc: InvalidInput
                  ) -> None:
    studies = [study for study in request_json.get("studies", ()) if isinstance(study, dict)]
    if not studies:
        progress.add_total(1)
        progress.fail(exc.field or "request", str(exc))
        return
    progress.add_total(len(studies))
    for index, study in enumerate(studies):
        progress.fail(f"studies[{index}]", str(exc), str(study.get("studyInstanceUID", "")))
