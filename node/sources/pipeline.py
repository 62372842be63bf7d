"""One import: list every source, fetch each object (bounded, with retries), make it DICOM with
the request's data, and hand it to the one ingest path.

Every object ends as a success or as a failure with a message in the progress record; nothing a
source does reaches the caller as an exception. A fetched object goes to `incoming/` first
(same file system as the storage); what the ingest path then does with it is what it does with a
C-STORE: validate, index in a group commit, rename into place.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, TypeVar

from node.config import Config
from node.errors import NodeError
from node.index.index_writer import AddOutcome, OtherPatientsStudy
from node.index.instance_queries import stored_files
from node.ingest.file_completeness import check_complete
from node.ingest.ingestor import IngestResult
from node.services import NodeServices
from node.sources.base import Source, SourceError, SourceObject, TransientSourceError
from node.sources.non_dicom_wrapping import WRAPPED_KINDS, wrap
from node.sources.progress import ImportProgress
from node.sources.request_attributes import made_up_uid, request_attributes
from node.sources.rewrite import rewrite_file
from node.sources.slide_metadata import SlideMetadata
from node.storage.folder_storage import Storage

log = logging.getLogger(__name__)

_T = TypeVar("_T")



class SlideRegistry(Protocol):
    """Where slides are made findable by containerIdentifier (the pathology package; node/
    cannot import it, so the HTTP layer hands it in)."""

    async def register_file(self, path: Path, attributes: dict[str, str], slide: SlideMetadata
                            ) -> None:
        """A non-DICOM slide (NDPI, MRXS, SVS, TIFF) at `path`, kept there; `attributes` are
        the request's DICOM attributes (UIDs, accession number). Refuses an unreadable file."""

    async def record_metadata(self, slide: SlideMetadata) -> None:
        """The request's slide data for a DICOM slide (it wins over the DICOM's)."""


@dataclass(frozen=True)
class FetchPolicy:
    concurrency: int = 8
    retries: int = 3
    backoff: float = 0.5
    timeout: float = 60.0

    @classmethod
    def from_config(cls, config: Config) -> FetchPolicy:
        s = config.sources
        return cls(s.fetch_concurrency, s.fetch_retries, s.retry_backoff_seconds,
                   s.fetch_timeout)


def _study_uid(item: SourceObject) -> str:
    return item.study.study_uid if item.study is not None else item.study_uid


def _sop_uid(item: SourceObject) -> str:
    if item.instance is not None and item.instance.sop_uid and not item.sibling:
        return item.instance.sop_uid
    return item.sop_uid


class Importer:
    def __init__(self, services: NodeServices, policy: FetchPolicy,
                 slides: SlideRegistry | None = None) -> None:
        self.services = services
        self.policy = policy
        self.slides = slides
        self._recorded_slides: set[str] = set()
        # SOP Instance UID -> (path, size) of index rows whose file is missing (resumed runs).
        self._unplaced: dict[str, tuple[str, int]] = {}

    async def run(self, sources: Sequence[Source], progress: ImportProgress,
                  resumed: bool = False) -> None:
        """Import everything; returns when every object has succeeded or failed. Objects
        `progress` already counts (restored from an earlier run) are not fetched again; on a
        `resumed` run neither are those the request names by a SOP Instance UID the index
        already holds, file and all (the earlier run imported them after its last progress
        write)."""
        limit = asyncio.Semaphore(self.policy.concurrency)
        try:
            async with AsyncExitStack() as stack:
                listed = await asyncio.gather(
                    *(self._list(stack, source, progress) for source in sources))
                progress.set_state("fetching")
                pending = [(source, item) for source, items in zip(sources, listed, strict=True)
                           for item in items if item.identity not in progress.settled]
                if resumed:
                    pending = await self._not_yet_indexed(pending, progress)
                await asyncio.gather(*(self._one(limit, source, item, progress)
                                       for source, item in pending))
        except asyncio.CancelledError:
            progress.set_state("interrupted")
            raise
        progress.set_state("done")

    async def _not_yet_indexed(self, pending: list[tuple[Source, SourceObject]],
                               progress: ImportProgress) -> list[tuple[Source, SourceObject]]:
        names = sorted({_sop_uid(item) for _, item in pending if item.kind != "slide"} - {""})
        found = await stored_files(self.services.sessions, names)
        storage = self.services.storage
        stored = await asyncio.to_thread(lambda: {sop for sop, path, _ in found
                                                  if storage.exists(path)})
        # Indexed, but the file is still in the incoming/ folder of the instance that died
        # between its commit and its rename (its own restart would finish it): fetched again
        # and put in place (`_place_missing`).
        self._unplaced = {sop: (path, size) for sop, path, size in found if sop not in stored}
        rest = []
        for source, item in pending:
            sop_uid = _sop_uid(item)
            if item.kind != "slide" and sop_uid in stored:
                progress.succeed(_study_uid(item), item=item.identity, sop_uid=sop_uid)
            else:
                rest.append((source, item))
        return rest

    def _place_missing(self, prepared: Path, item: SourceObject) -> IngestResult | None:
        """Store a fetched file at the path of its index row when the row's file is missing
        and the file is the one the row was committed for (same size, as recovery checks);
        None: leave it to the ingest path."""
        unplaced = self._unplaced.pop(_sop_uid(item), None)
        if unplaced is None:
            return None
        relative, size = unplaced
        storage = self.services.storage
        if prepared.stat().st_size != size or storage.exists(relative):
            return None
        check_complete(prepared)  # the ingest path's walk, which this way around skips
        storage.flush_path(prepared)
        # The row is committed already: placing it is the whole job (a folder renames and
        # fsyncs, an object store uploads).
        storage.place(prepared, relative)
        return IngestResult(_sop_uid(item), _study_uid(item), AddOutcome.ADDED, relative)

    async def _list(self, stack: AsyncExitStack, source: Source, progress: ImportProgress
                    ) -> list[SourceObject]:
        try:
            await stack.enter_async_context(source)
        except Exception as exc:
            # The objects are known from the request: each is reported failed, with the reason.
            message = _message(exc, source)
            try:
                items = await source.list_objects()
            except Exception:
                items = []
            if not items:
                self._source_failed(source, progress, message)
            progress.add_total(len(items))
            for item in items:
                progress.fail(item.where, message, _study_uid(item), _sop_uid(item))
            return []
        try:
            items = await self._retrying(source.list_objects)
        except Exception as exc:
            self._source_failed(source, progress, _message(exc, source))
            return []
        progress.add_total(len(items))
        skipped = int(getattr(source, "skipped", 0))
        if skipped:
            progress.skip(skipped)
        return items

    @staticmethod
    def _source_failed(source: Source, progress: ImportProgress, message: str) -> None:
        study = getattr(source, "study", None)
        progress.add_total(1)
        progress.fail(getattr(study, "where", source.label), message,
                      getattr(study, "study_uid", ""))

    async def _retrying(self, call: Callable[[], Awaitable[_T]]) -> _T:
        attempt = 0
        while True:
            try:
                return await call()
            except TransientSourceError as exc:
                if attempt >= self.policy.retries:
                    raise SourceError(f"{exc} (after {attempt + 1} tries)") from None
                await self._pause(attempt)
                attempt += 1

    async def _pause(self, attempt: int) -> None:
        # Exponential backoff with jitter, so that parallel fetches do not retry in step.
        await asyncio.sleep(self.policy.backoff * (2 ** attempt) * (0.5 + random.random()))

    async def _one(self, limit: asyncio.Semaphore, source: Source, item: SourceObject,
                   progress: ImportProgress) -> None:
        async with limit:
            try:
                results = await self._import(source, item)
            except (SourceError, NodeError) as exc:
                progress.fail(item.where, str(exc), _study_uid(item), _sop_uid(item),
                              item=item.identity, refused=isinstance(exc, OtherPatientsStudy))
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The exception's text may quote file contents (names): log the type only.
                log.warning("import from %s: unexpected %s", source.label, type(exc).__name__)
                progress.fail(item.where, f"internal error ({type(exc).__name__})",
                              _study_uid(item), _sop_uid(item), item=item.identity)
                return
        duplicate = bool(results) and all(r.outcome is not AddOutcome.ADDED for r in results)
        progress.succeed(results[0].study_uid if results else _study_uid(item), duplicate,
                         item=item.identity,
                         sop_uid=results[0].sop_uid if results else _sop_uid(item))

    async def _import(self, source: Source, item: SourceObject) -> list[IngestResult]:
        if item.kind == "slide":
            await self._slide_file(source, item)
            return []
        fetched = await self._fetch(source, item)
        try:
            prepared = await asyncio.to_thread(self._prepare, self.services.storage, fetched,
                                               item)
        except BaseException:
            fetched.unlink(missing_ok=True)
            raise
        if fetched not in prepared:
            fetched.unlink(missing_ok=True)
        if self._unplaced and len(prepared) == 1:
            try:
                placed = await asyncio.to_thread(self._place_missing, prepared[0], item)
            except BaseException:
                prepared[0].unlink(missing_ok=True)
                raise
            if placed is not None:
                return [placed]
        origin = f"api:{source.label}"
        results: list[IngestResult] = []
        try:
            for path in prepared:
                # The ingest path consumes its file (placed, or deleted on failure).
                results.append(await self.services.ingestor.ingest_incoming(path, origin))
        finally:
            for path in prepared[len(results) + 1:]:
                path.unlink(missing_ok=True)
        slide = item.instance.slide if item.instance is not None else None
        if slide is not None and slide.container_identifier and self.slides is not None \
                and slide.container_identifier not in self._recorded_slides:
            self._recorded_slides.add(slide.container_identifier)
            await self.slides.record_metadata(slide)
        return results

    async def _slide_file(self, source: Source, item: SourceObject) -> None:
        """A non-DICOM slide is served from its file: a local one where it is, a fetched one
        from the storage."""
        if self.slides is None or item.instance is None:
            raise SourceError("non-DICOM slides (NDPI, MRXS, SVS, TIFF) cannot be opened: "
                              "no slide registry is installed")
        values = self._complete(request_attributes(item), item)
        path = source.local_path(item)
        if path is None:
            companions = await self._retrying(lambda: source.companions(item))
            fetched = await self._fetch(source, item)
            # Beside incoming/ in the data folder (same file system), not under the DICOM
            # storage root, whose every file is an indexed instance.
            suffix = Path(item.key).suffix.lower()[:8]
            path = (self.services.config.data_dir / "slides" / values["StudyInstanceUID"]
                    / f"{values['SOPInstanceUID']}{suffix}")
            try:
                if companions:
                    # The folder first: once the slide file is in place, it is complete.
                    await self._fetch_folder(source, item, companions, path.with_suffix(""))
                await asyncio.to_thread(_keep, self.services.storage, fetched, path)
            except BaseException:
                fetched.unlink(missing_ok=True)
                raise
        await self.slides.register_file(path, values, item.instance.slide)

    async def _fetch_folder(self, source: Source, item: SourceObject,
                            companions: list[tuple[str, str]], folder: Path) -> None:
        """Fetch a slide's companion objects into `folder`, which appears whole or not at
        all (built beside it, then renamed into place)."""
        limit = asyncio.Semaphore(self.policy.concurrency)
        fetched: list[tuple[Path, str]] = []

        async def one(key: str, relative: str) -> None:
            async with limit:
                fetched.append((await self._fetch(source, replace(item, key=key)), relative))

        try:
            await asyncio.gather(*(one(key, relative) for key, relative in companions))
            await asyncio.to_thread(_keep_folder, self.services.storage, fetched, folder)
        finally:
            for path, _ in fetched:
                path.unlink(missing_ok=True)

    async def _fetch(self, source: Source, item: SourceObject) -> Path:
        storage = self.services.storage
        attempt = 0
        while True:
            out, path = storage.new_incoming_file()
            try:
                with out:
                    await source.fetch(item, out)
                return path
            except TransientSourceError as exc:
                path.unlink(missing_ok=True)
                if attempt >= self.policy.retries:
                    raise SourceError(f"{exc} (after {attempt + 1} tries)") from None
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            await self._pause(attempt)
            attempt += 1

    def _prepare(self, storage: Storage, fetched: Path, item: SourceObject) -> list[Path]:
        """The DICOM file(s) to ingest: the fetched file itself, or new files in incoming/."""
        values = request_attributes(item)
        if item.kind == "dicom":
            if not values:
                return [fetched]
            out, path = storage.new_incoming_file()
            try:
                with out:
                    changed = rewrite_file(fetched, out, values)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            if not changed:
                path.unlink(missing_ok=True)
                return [fetched]
            return [path]
        values = self._complete(values, item)
        if item.kind in WRAPPED_KINDS:
            out, path = storage.new_incoming_file()
            try:
                with out, fetched.open("rb") as source:
                    wrap(item.kind, source, out, values)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            return [path]
        raise SourceError(f"unsupported kind of file: {item.kind}")

    @staticmethod
    def _complete(values: dict[str, str], item: SourceObject) -> dict[str, str]:
        """UIDs and numbers for a file that has none of its own."""
        study = values.get("StudyInstanceUID") or made_up_uid("study", item.where, item.key)
        series = values.get("SeriesInstanceUID") or made_up_uid("series", study, item.where)
        out = {**values, "StudyInstanceUID": study, "SeriesInstanceUID": series}
        out.setdefault("SOPInstanceUID", made_up_uid("instance", series, item.where, item.key))
        if item.series is not None:
            out.setdefault("SeriesNumber", str(item.series.number))
        if item.instance is not None:
            out.setdefault("InstanceNumber", str(item.instance.number))
        return out


def _keep_folder(storage: Storage, files: list[tuple[Path, str]], target: Path) -> None:
    """Move fetched files into a new folder `target` (replacing what an interrupted earlier
    run left there)."""
    partial = target.with_name(f"{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for fetched, relative in files:
        storage.flush_path(fetched)
        placed = partial / relative
        placed.parent.mkdir(parents=True, exist_ok=True)
        os.replace(fetched, placed)
    for folder in sorted({(partial / relative).parent for _, relative in files}):
        storage.flush_path(folder)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    storage.flush_path(target.parent)


def _keep(storage: Storage, fetched: Path, target: Path) -> None:
    storage.flush_path(fetched)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(fetched, target)
    storage.flush_path(target.parent)


def _message(exc: Exception, source: Source) -> str:
    """What the viewer is told: our own errors' messages; for anything else only its type
    (a library's message may quote a request's secret)."""
    if isinstance(exc, SourceError | NodeError):
        return str(exc)
    log.warning("source %s: unexpected %s", source.label, type(exc).__name__)
    return f"{source.label}: internal error ({type(exc).__name__})"
