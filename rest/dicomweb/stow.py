"""STOW-RS (PS3.18 10.5): storing instances sent as `multipart/related; type="application/dicom"`,
one DICOM Part 10 file per part, at POST /dicom-web/studies and /dicom-web/studies/{study}.

A body of declared length up to WHOLE_BODY_BYTES is read whole and split in memory
(`stow_body`: one `bytes.find` per part, where aiohttp's streaming reader cost the event loop
more than the rest of the request); each part's bytes, a view of the body, are written to
incoming/ by the ingest thread that takes it. A larger or chunked body is streamed: a part up to
IN_MEMORY_BYTES is read whole and handed over the same way, a larger one is written to incoming/
as its bytes arrive, never held whole in memory. The app's `http.max_body_bytes` does not apply
here; `dicomweb.max_stow_bytes` bounds the body (413). A part goes to the one ingest path, which
answers once the instance is durable and indexed; meanwhile the next part is read, so that the
parts of a request share group commits. The parts of a body held whole go in batches of
BATCH_PARTS, each batch one ingest thread's (Ingestor.ingest_batch_blocking): handed over one
by one, each part paid its own thread switches and folder fsync (bench.dicomweb_stow, four
clients: 1.23 ms of CPU per instance one by one, 0.53 in batches; Orthanc 0.92). A body read
whole that ends early (the client went away) stores nothing; a streamed one keeps the parts it
completed, never part of one.

Who may store: the API key, anything; a viewer session, only if its role allows `save`, only into
the studies its grant holds, a Microscopy Bulk Simple Annotations instance (read into the slide's
annotation layers) only if its role allows `annotations` too and the instance's content creator
is the session's user (who owns the layers it becomes), and each request is audited with
the session's user; for it alone a missing IssuerOfPatientID of the study's patient is filled
in (rest/dicomweb/stow_issuer.py), and an instance whose SOP Instance UID the index holds under a
study outside its grant is refused (as a duplicate it would replace that instance, with
`node.overwrite_duplicates`). On
/studies/{study} an instance of another study is refused (0xC122) and nothing of it is kept. The
index records the origin as `stow` (API key) or `stow:USERNAME` (session).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydicom import dcmread
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node.errors import InvalidInput
from node.index.index_writer import AddOutcome
from node.index.instance_queries import study_of_instance
from node.ingest.header_scan import HEAD_BYTES
from node.ingest.ingestor import Incoming, Ingestor, IngestResult
from node.ingest.instance_record import InstanceRecord, is_valid_uid
from node.ingest.issuer_fill import fill_file, write_filled
from node.viewing import audit
from pathology.annotations import ANN_SOP_CLASS, layer_owner
from rest.client_address import client_address
from rest.dicomweb.negotiation import media_type, require_json
from rest.dicomweb.readers import SAVED_BY_SESSIONS, Reader, reader
from rest.dicomweb.stow_body import MalformedBody, split_body
from rest.dicomweb.stow_issuer import IssuerFill, MissingIssuers
from rest.dicomweb.stow_response import (
    CANNOT_UNDERSTAND,
    DATASET_MISMATCH,
    DUPLICATE,
    ISSUER_FILLED,
    NOT_AUTHORIZED,
    OUT_OF_RESOURCES,
    PROCESSING_FAILURE,
    WRONG_STUDY,
    PartOutcome,
    store_response,
)
from rest.dicomweb.urls import BASE_PATH, base_url
from rest.middleware import json_error, public
from rest.state import SERVICES

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

DICOM = "application/dicom"
CHUNK_BYTES = 256 * 1024
# Parts read and waiting for the ingest path at once, per request: enough to fill group
# commits; each waits in memory (at most IN_MEMORY_BYTES) or as a file in incoming/.
IN_FLIGHT = 16
# Parts of a body held whole that one ingest thread takes together (Ingestor.
# ingest_batch_blocking): one hand-over to the thread, to the fsyncs and to the commit for them
# all. Two such batches of a request are under way at once (IN_FLIGHT).
BATCH_PARTS = 8
IN_MEMORY_BYTES = 1 << 20
# A body of declared length up to this is read whole and split in memory; the request holds it
# until its last part is stored.
WHOLE_BODY_BYTES = 64 << 20
# Bodies held whole at once by one process, together: beyond it a request is streamed (through
# incoming/) as a larger one is, so that many concurrent uploads cannot fill the memory.
WHOLE_BODIES_BYTES = 256 << 20


class WholeBodyBudget:
    """The bytes of bodies this process holds whole at a time (one event loop: no lock)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        """Whether a body of `size` may be held whole; when True, `give` it back after."""
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size


WHOLE_BODIES = WholeBodyBudget(WHOLE_BODIES_BYTES)
# SOP Instance UIDs named in a session's audit row; the count is always there.
AUDITED_UIDS = 1000
# Parts in one request (each costs a task and an item of the answer, even when empty), and
# what each counts against max_stow_bytes beside its content (its boundary and headers).
MAX_PARTS = 100_000
PART_OVERHEAD = 100


class Refused(Exception):
    """An instance this request may not store; `status` is its FailureReason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class BodyError(Exception):
    """The body cannot be read on from here (malformed, too large, a part of another type).
    The parts before it are stored all the same: each was answered by the ingest path."""

    def __init__(self, status: int, reason: str, field: str = "body") -> None:
        super().__init__(reason)
        self.status = status
        self.field = field


@dataclass(frozen=True)
class Received:
    """One part: its bytes (a small part) or its file in incoming/, first bytes and size, and
    the IssuerOfPatientID to fill in, if any."""

    data: bytes | memoryview | None
    path: Path | None
    head: bytes
    size: int
    fill: IssuerFill | None = None


@dataclass
class Store:
    """One STOW-RS request: who stores, into which study, and its parts on their way."""

    who: Reader
    path_study: str | None
    ingestor: Ingestor
    origin: str
    # Bytes the body may still bring (dicomweb.max_stow_bytes at first).
    remaining: int
    # A viewer session's: the missing issuers it fills in (None: the API key's request).
    issuers: MissingIssuers | None = None
    # A viewer session's: the index, asked which study holds each part's SOP Instance UID.
    sessions: async_sessionmaker[AsyncSession] | None = None
    tasks: list[asyncio.Future[list[PartOutcome]]] = field(default_factory=list)
    # One per part under way, at most IN_FLIGHT.
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(IN_FLIGHT))
    # Parts of a body held whole, read and not yet handed to an ingest thread.
    batch: list[tuple[Received, int]] = field(default_factory=list)

    def admit(self, record: InstanceRecord) -> None:
        """Raise Refused for an instance this request may not store (before it is kept)."""
        if self.path_study is not None and record.study_uid != self.path_study:
            raise Refused(WRONG_STUDY, f"instance of study {record.study_uid}, not of "
                                       f"{self.path_study} named by the URL")
        if self.who.grant is not None and record.study_uid not in self.who.grant.allowed:
            raise Refused(NOT_AUTHORIZED, "instance of a study outside the viewing session")
        if (self.who.grant is not None and record.sop_class_uid == ANN_SOP_CLASS
                and not self.who.grant.features.get("annotations")):
            # Read into the slide's annotation layers (pathology/annotation_store.py): a way
            # around the layer routes' check of the same permission.
            raise Refused(NOT_AUTHORIZED, "a Microscopy Bulk Simple Annotations instance "
                                          "becomes annotation layers: the viewing session's "
                                          "role does not allow annotations")

    async def read(self, body: MultipartReader) -> None:
        """Read each part (a large one into incoming/) and start its ingest, until the
        closing boundary."""
        number = 0
        while True:
            part = await _next_part(body, number)
            if part is None:
                return
            number += 1
            self._count_part(number)
            await self._start(await self._receive(_dicom_part(part, number), number), number)
            self._hand_over()

    async def read_whole(self, body: bytes, boundary: str) -> None:
        """Start the ingest of each part of a body held whole, until the closing boundary."""
        parts = split_body(body, boundary)
        number = 0
        while True:
            try:
                part = next(parts, None)
            except MalformedBody as exc:
                raise BodyError(400, f"malformed multipart body after part {number}: {exc}"
                                [:200]) from exc
            if part is None:
                self._hand_over()
                return
            number += 1
            self._count_part(number)
            _require_dicom(part.headers.get("content-type"), number)
            size = len(part.data)
            self.remaining -= size
            if self.remaining < 0:
                raise BodyError(413, "the body is larger than dicomweb.max_stow_bytes")
            received = Received(part.data, None, bytes(part.data[:HEAD_BYTES]), size)
            if size <= IN_MEMORY_BYTES:
                await self._start(received, number)
                if len(self.batch) >= BATCH_PARTS:
                    self._hand_over()
                continue
            # A large part is stored alone, as a streamed one is written before the next is
            # read: on a nearly full disk it fails by itself, not the small parts beside it.
            self._hand_over()
            await self._drain()
            await self._start(received, number)
            self._hand_over()
            await self._drain()

    def _count_part(self, number: int) -> None:
        self.remaining -= PART_OVERHEAD
        if number > MAX_PARTS or self.remaining < 0:
            raise BodyError(413, f"the body is larger than dicomweb.max_stow_bytes or "
                                 f"has more than {MAX_PARTS} parts")

    async def _start(self, received: Received | PartOutcome, number: int) -> None:
        """Add the part to the batch for the next ingest thread, once fewer than IN_FLIGHT of
        this request's parts are under way (a part that failed already is its outcome)."""
        loop = asyncio.get_running_loop()
        if isinstance(received, PartOutcome):
            done = loop.create_future()
            done.set_result([received])
            self.tasks.append(done)
            return
        outside = await self._replaces_outside_grant(received.head)
        if outside:
            await self._start(_failed(number, None, received.head, NOT_AUTHORIZED, outside),
                              number)
            if received.path is not None:
                received.path.unlink(missing_ok=True)
            return
        if self.issuers is not None:
            part = received.data if received.path is None else received.path
            received = replace(received, fill=await self.issuers.fill_for(part or b""))
        await self.slots.acquire()
        self.batch.append((received, number))

    async def _replaces_outside_grant(self, head: bytes) -> str:
        """For a viewer session, why a part may not be stored when its SOP Instance UID is one
        the index holds under a study outside the grant ("" otherwise): as a duplicate it
        would replace that instance (node.overwrite_duplicates) or tell that it exists."""
        if self.sessions is None or self.who.grant is None:
            return ""
        _, sop_uid = _identify(head)
        held = await study_of_instance(self.sessions, sop_uid) if sop_uid else None
        if held is None or held in self.who.grant.allowed:
            return ""
        return "SOP Instance UID of an instance outside the viewing session"

    def _hand_over(self) -> None:
        """Hand the batch to an ingest thread."""
        if not self.batch:
            return
        batch, self.batch = self.batch, []
        future = asyncio.get_running_loop().run_in_executor(None, self._ingest, batch)
        self.tasks.append(future)
        future.add_done_callback(functools.partial(self._release, len(batch)))

    def _release(self, parts: int, _: asyncio.Future[list[PartOutcome]]) -> None:
        for _part in range(parts):
            self.slots.release()

    async def _drain(self) -> None:
        """Wait until no part of this request is under way."""
        for _ in range(IN_FLIGHT):
            await self.slots.acquire()
        for _ in range(IN_FLIGHT):
            self.slots.release()

    async def settle(self) -> list[PartOutcome]:
        """Every started part's outcome, in the order of the body."""
        self._hand_over()  # what a body error left read
        batches = await asyncio.gather(*self.tasks)
        return sorted((o for batch in batches for o in batch), key=lambda o: o.part)

    async def _receive(self, part: BodyPartReader, number: int) -> Received | PartOutcome:
        """Read the part: whole while it is small, else streamed into a new incoming file. A
        write error (a full disk) fails this part and reads past it, so that the parts after
        it are still answered."""
        chunks: list[bytes] = []
        head = bytearray()
        size = 0
        large: _LargePart | None = None
        try:
            while chunk := await _read_chunk(part, number):
                size += len(chunk)
                if size > self.remaining:
                    raise BodyError(413, "the body is larger than dicomweb.max_stow_bytes")
                if len(head) < HEAD_BYTES:
                    head += chunk[:HEAD_BYTES - len(head)]
                if large is not None:
                    large.write(chunk)
                    continue
                chunks.append(chunk)
                if size > IN_MEMORY_BYTES:
                    large = _LargePart(self.ingestor.storage.new_incoming_file)
                    large.write(b"".join(chunks))
                    chunks = []
        except BaseException:  # the body, not the disk: the request ends here
            if large is not None:
                large.discard()
            raise
        self.remaining -= size
        if large is None:
            return Received(b"".join(chunks), None, bytes(head), size)
        path = large.close()
        if path is None:
            log.error("STOW-RS part %d could not be written: %s", number, large.error)
            return _failed(number, None, bytes(head), OUT_OF_RESOURCES, "storage error")
        return Received(None, path, bytes(head), size)

    def _ingest(self, batch: list[tuple[Received, int]]) -> list[PartOutcome]:
        """The ingest path's answers for a batch of parts, as their outcomes (in a worker
        thread; every part's file is consumed either way)."""
        outcomes: dict[int, PartOutcome] = {}
        files: list[Incoming] = []
        taken: list[tuple[Received, int, list[InstanceRecord]]] = []
        for received, number in batch:
            seen: list[InstanceRecord] = []
            try:
                files.append(self._incoming(received, seen))
            except Exception as exc:
                outcomes[number] = self._outcome(received, number, seen, exc)
                continue
            taken.append((received, number, seen))
        results = self.ingestor.ingest_batch_blocking(files, self.origin)
        for (received, number, seen), result in zip(taken, results, strict=True):
            outcomes[number] = self._outcome(received, number, seen, result)
        return [outcomes[number] for _, number in batch]

    def _admit_layers_of(self, path: Path) -> None:
        """A session's annotation instance becomes layers owned by its content creator
        (pathology/annotations.py): only the session's own user's, as the layer routes save
        them; another name would put layers under a user who never drew them."""
        if self.who.grant is None:
            return  # the API key's caller names its users, as on /webdv/slides
        header = dcmread(path, stop_before_pixels=True, specific_tags=["ContentCreatorName"])
        user = str(self.who.grant.context["username"])
        if layer_owner(header) != user:
            raise Refused(NOT_AUTHORIZED, "an annotation instance's ContentCreatorName must "
                                          "be the viewing session's user")

    def _incoming(self, received: Received, seen: list[InstanceRecord]) -> Incoming:
        """The part's file in incoming/ for the ingest path (written here for a part held in
        memory), and its admission, which notes the header's record in `seen`."""
        fill = received.fill

        def admit(record: InstanceRecord) -> None:
            seen.append(record)
            if fill is not None and (record.issuer, record.patient_id) != (
                    fill.issuer, fill.gap.patient_id):
                raise Refused(PROCESSING_FAILURE, "IssuerOfPatientID could not be filled in")
            self.admit(record)
            if record.sop_class_uid == ANN_SOP_CLASS:
                self._admit_layers_of(path)

        if received.path is None:
            path = self._write_incoming(received.data or b"", fill)
        elif fill is None:
            path = received.path
        else:  # a streamed part's file, written again with the issuer
            path = fill_file(received.path, fill.gap, fill.element,
                             self.ingestor.storage.new_incoming_file)
        if fill is not None:  # a filled file's first bytes and size are not the part's
            return Incoming(path, admit=admit)
        return Incoming(path, received.head, received.size, admit)

    def _outcome(self, received: Received, number: int, seen: list[InstanceRecord],
                 result: IngestResult | Exception) -> PartOutcome:
        """The part's outcome: stored (with a warning for a duplicate or a filled issuer), or
        the failure item the exception that stopped it means."""
        if isinstance(result, Refused):
            return _failed(number, seen, received.head, result.status, str(result))
        if isinstance(result, InvalidInput):
            # A missing or malformed unique key; a file that is not DICOM at all.
            status = DATASET_MISMATCH if result.field else CANNOT_UNDERSTAND
            return _failed(number, seen, received.head, status, str(result))
        if isinstance(result, OSError):
            log.error("STOW-RS part %d could not be stored: %s", number, result)
            return _failed(number, seen, received.head, OUT_OF_RESOURCES, "storage error")
        if isinstance(result, Exception):
            log.error("STOW-RS part %d failed", number, exc_info=result)
            return _failed(number, seen, received.head, PROCESSING_FAILURE,
                           "internal error while storing")
        record = seen[0]
        warning, note = None, ""
        if result.outcome is AddOutcome.DUPLICATE_KEPT:
            warning, note = DUPLICATE, f"{record.sop_uid} was stored already: that one is kept"
        elif result.outcome is AddOutcome.DUPLICATE_REPLACED:
            warning, note = DUPLICATE, f"{record.sop_uid} was stored already: replaced"
        elif received.fill is not None:
            warning, note = ISSUER_FILLED, (f"{record.sop_uid} had no IssuerOfPatientID: its "
                                            f"study's patient's was filled in")
            log.info("STOW-RS part %d: IssuerOfPatientID of study %s filled in for %s", number,
                     record.study_uid, record.sop_uid)
        return PartOutcome(number, record.sop_class_uid, record.sop_uid, record.study_uid,
                           record.series_uid, warning=warning, note=note,
                           issuer_filled=received.fill is not None)

    def _write_incoming(self, data: bytes | memoryview, fill: IssuerFill | None) -> Path:
        """A small part's file in incoming/ (in the ingest thread: off the event loop), with
        its IssuerOfPatientID filled in when `fill` says so."""
        out, path = self.ingestor.storage.new_incoming_file()
        try:
            with out:
                if fill is None:
                    out.write(data)
                else:
                    write_filled(out, data, fill.gap, fill.element)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path


class _LargePart:
    """A part past IN_MEMORY_BYTES, written to incoming/ as it arrives. A write error (a full
    disk) is kept and the rest of the part read past, so that the parts after it are still
    answered."""

    def __init__(self, new_file: Callable[[], tuple[BinaryIO, Path]]) -> None:
        self.out: BinaryIO | None = None
        self.path: Path | None = None
        self.error: OSError | None = None
        try:
            self.out, self.path = new_file()
        except OSError as exc:
            self.error = exc

    def write(self, chunk: bytes) -> None:
        if self.out is not None and self.error is None:
            try:
                self.out.write(chunk)
            except OSError as exc:
                self.error = exc

    def close(self) -> Path | None:
        """The written file, or None (removed) after a write error."""
        if self.out is not None:
            try:
                self.out.close()
            except OSError as exc:
                self.error = self.error or exc
        if self.error is not None:
            self.discard()
            return None
        return self.path

    def discard(self) -> None:
        if self.out is not None:
            with contextlib.suppress(OSError):
                self.out.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _failed(number: int, seen: list[InstanceRecord] | None, head: bytes, status: int,
            note: str) -> PartOutcome:
    """A failure item naming the instance as far as it could be read."""
    if seen:
        sop_class, sop_uid = seen[0].sop_class_uid, seen[0].sop_uid
    else:
        sop_class, sop_uid = _identify(head)
    return PartOutcome(number, sop_class, sop_uid, failure=status, note=note)


def _identify(head: bytes) -> tuple[str, str]:
    """SOP Class and Instance UIDs of a part the index could not read, if they can be found
    in its first bytes (else empty: the failure item then names no instance)."""
    try:
        ds = dcmread(BytesIO(head), force=True, stop_before_pixels=True,
                     specific_tags=["SOPClassUID", "SOPInstanceUID"])
        found = (str(ds.get("SOPClassUID", "") or ""), str(ds.get("SOPInstanceUID", "") or ""))
    except Exception:  # anything at all may arrive as a part
        return "", ""
    return found[0] if is_valid_uid(found[0]) else "", found[1] if is_valid_uid(found[1]) else ""


async def _next_part(body: MultipartReader, number: int) -> Any:
    try:
        return await body.next()
    except (ValueError, AssertionError, HttpProcessingError) as exc:
        raise BodyError(400, f"malformed multipart body after part {number}: {exc}"[:200]
                        ) from exc


async def _read_chunk(part: BodyPartReader, number: int) -> bytes:
    try:
        return await part.read_chunk(CHUNK_BYTES)
    except (ValueError, AssertionError, HttpProcessingError) as exc:
        raise BodyError(400, f"malformed multipart body in part {number}: {exc}"[:200]) from exc


def _dicom_part(part: Any, number: int) -> BodyPartReader:
    """The part, or 415 for one that is not application/dicom."""
    declared = part.headers.get("Content-Type")
    if not isinstance(part, BodyPartReader):
        declared = declared or "multipart"
    _require_dicom(declared, number)
    assert isinstance(part, BodyPartReader)
    return part


def _require_dicom(declared: str | None, number: int) -> None:
    """415 for a part that is not application/dicom (a part without Content-Type is taken to
    be of the body's declared type)."""
    if declared is not None and media_type(declared).media_type != DICOM:
        raise BodyError(415, f"part {number} is {declared[:100]!r}, not {DICOM}", "Content-Type")


async def _whole_body(request: web.Request, size: int) -> bytes:
    """The body of declared length `size`, or 400 when it ends early (the client went away:
    nothing of it is stored)."""
    try:
        return await request.content.readexactly(size)
    except (asyncio.IncompleteReadError, HttpProcessingError, ConnectionError) as exc:
        log.info("STOW-RS body ended early: %s", type(exc).__name__)
        raise BodyError(400, f"the body ended before its Content-Length ({size} bytes)"
                        ) from exc


def _check_content_type(request: web.Request) -> str:
    """The body's boundary; 400 for a body that is not multipart/related with a boundary, 415
    for one that declares parts of another type than application/dicom."""
    declared = media_type(request.headers.get("Content-Type", ""))
    if declared.media_type != "multipart/related":
        raise InvalidInput('Content-Type: a STOW-RS body is multipart/related; '
                           'type="application/dicom"', field="Content-Type")
    inner = declared.params.get("type")
    if inner is not None and inner.lower() != DICOM:
        raise web.HTTPUnsupportedMediaType(
            reason=f"Content-Type: parts of type {inner[:100]!r}: only {DICOM} is stored")
    boundary = declared.params.get("boundary", "")
    if not 0 < len(boundary) <= 70:
        raise InvalidInput("Content-Type: a boundary of 1 to 70 characters is needed",
                           field="Content-Type")
    return boundary


def _origin(who: Reader) -> str:
    if who.grant is None:
        return "stow"
    return f"{SAVED_BY_SESSIONS}{who.grant.context['username']}"[:80]


async def _audit(request: web.Request, who: Reader, outcomes: list[PartOutcome]) -> None:
    """A viewer session's store, named with its user (the API key's are in the index only)."""
    if who.grant is None or not outcomes:
        return
    stored = [o for o in outcomes if o.stored]
    filled = [o.sop_uid for o in stored if o.issuer_filled][:AUDITED_UIDS]
    context = who.grant.context
    await audit.record_alone(
        request.app[SERVICES].sessions, "stow", username=context["username"],
        role=context["role"], context_pk=who.grant.context_pk,
        client_address=client_address(request),
        studyInstanceUIDs=sorted({o.study_uid for o in stored}),
        sopInstanceUIDs=[o.sop_uid for o in stored][:AUDITED_UIDS],
        stored=len(stored), failed=len(outcomes) - len(stored),
        **({"issuerFilledSopInstanceUIDs": filled} if filled else {}))


async def _store(request: web.Request, path_study: str | None) -> web.StreamResponse:
    who = await reader(request)
    if path_study is not None and not is_valid_uid(path_study):
        raise InvalidInput("study: not a UID", field="study")
    if who.grant is not None:
        who.grant.require_feature("save")
        if path_study is not None:
            who.require(path_study)
    boundary = _check_content_type(request)
    require_json(request)
    services = request.app[SERVICES]
    limit = services.config.dicomweb.max_stow_bytes
    if request.content_length is not None and request.content_length > limit:
        return json_error(413, f"the body ({request.content_length} bytes) is larger than "
                               f"dicomweb.max_stow_bytes ({limit})", "body")
    issuers = None if who.grant is None else MissingIssuers(services.sessions, who.grant.allowed)
    store = Store(who, path_study, services.ingestor, _origin(who), limit, issuers=issuers,
                  sessions=None if who.grant is None else services.sessions)
    error: BodyError | None = None
    try:
        size = request.content_length
        if size is not None and size <= WHOLE_BODY_BYTES and WHOLE_BODIES.take(size):
            try:
                await store.read_whole(await _whole_body(request, size), boundary)
            finally:
                WHOLE_BODIES.give(size)
        else:
            await store.read(await request.multipart())
    except BodyError as exc:
        error = exc
    finally:
        # The ingests under way finish whatever happens to the request; so does the audit.
        outcomes = await asyncio.shield(_settle(request, who, store))
    stored = sum(o.stored for o in outcomes)
    log.info("STOW-RS (%s): %d part(s) stored, %d failed%s",
             "API key" if who.grant is None else f"context {who.grant.context_pk}", stored,
             len(outcomes) - stored, f", then refused: {error.status}" if error else "")
    if error is not None:
        return json_error(error.status, f"{error} ({stored} part(s) before it stored)",
                          error.field)
    if not outcomes:
        raise InvalidInput("body: the multipart body has no part", field="body")
    response = store_response(outcomes, base_url(request), path_study)
    return web.Response(status=response.status, body=response.payload(),
                        headers=response.headers())


async def _settle(request: web.Request, who: Reader, store: Store) -> list[PartOutcome]:
    outcomes = await store.settle()
    await _audit(request, who, outcomes)
    return outcomes


def _handler(path_study: Callable[[web.Request], str | None]
             ) -> Callable[[web.Request], Any]:
    @public
    async def stow(request: web.Request) -> web.StreamResponse:
        return await _store(request, path_study(request))
    return stow


routes.post(BASE_PATH + "/studies")(_handler(lambda _: None))
routes.post(BASE_PATH + "/studies/{study}")(_handler(lambda r: r.match_info["study"]))
