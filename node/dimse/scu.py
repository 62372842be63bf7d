"""The node as an SCU toward its source nodes: C-ECHO, C-FIND, and retrieval by C-MOVE or C-GET.

pynetdicom's SCU calls block, so each runs in a thread of its own with a deadline kept on the
event loop; when the deadline passes (or the caller is cancelled) the association is aborted,
which ends the thread too. A thread per call rather than `asyncio.to_thread`: a retrieval may
take minutes, and parking several of them in the loop's small default executor would starve
the ingest path and the HTTP handlers that use it for file work.

Retrieved instances take the one ingest path with origin "retrieve:<AE title of the sender>".
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, build_role, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import AllStoragePresentationContexts, StoragePresentationContexts
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.status import code_to_category
from pynetdicom.transport import ThreadedAssociationServer

from node.config import Config, RemoteNode
from node.dimse import fastpath
from node.dimse.store_scp import (
    STATUS_CANNOT_UNDERSTAND,
    STATUS_DATASET_MISMATCH,
    STATUS_OUT_OF_RESOURCES,
    STATUS_SUCCESS,
    STATUS_WARNING_DUPLICATE,
    received_file,
)
from node.dimse.syntax_negotiation import SyntaxPreference
from node.errors import InvalidInput, RemoteNodeError
from node.index.index_writer import AddOutcome
from node.index.instance_queries import stored_instance_count
from node.ingest.instance_record import is_valid_uid
from node.services import NodeServices
from node.storage.folder_storage import Storage

log = logging.getLogger(__name__)

T = TypeVar("T")

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")

# Return keys asked for at each level, besides the query's own keys.
RETURN_KEYS: dict[str, tuple[str, ...]] = {
    "PATIENT": (
        "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
        "NumberOfPatientRelatedStudies",
    ),
    "STUDY": (
        "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
        "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
        "StudyDescription", "ReferringPhysicianName", "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    ),
    "SERIES": (
        "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber",
        "SeriesDescription", "SeriesDate", "BodyPartExamined", "NumberOfSeriesRelatedInstances",
    ),
    "IMAGE": (
        "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID",
        "InstanceNumber", "NumberOfFrames",
    ),
}

# What a C-GET proposes for the instances coming back: the storage SOP classes of pynetdicom's
# StoragePresentationContexts (its 120 most common ones in 3.0.4), each with the transfer
# syntaxes archives actually store. With the Get context that makes 121 presentation contexts;
# the cap of 127 keeps a longer list under the 128 an association may carry (PS3.8 9.3.2.2).
GET_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless,
    JPEG2000Lossless, JPEG2000, RLELossless,
]
GET_STORAGE_SOP_CLASSES = [str(cx.abstract_syntax) for cx in StoragePresentationContexts][:127]

_INTEGER_VRS = {"US", "UL", "SS", "SL", "UV", "SV"}


@dataclass(frozen=True)
class NodeFailure:
    ae_title: str
    message: str


@dataclass(frozen=True)
class FindResult:
    matches: list[tuple[str, Dataset]]
    answered: list[str]
    failed: list[NodeFailure]


# Told, from the retrieval's thread, at each pending C-MOVE/C-GET response: the instances
# received so far and how many the remote announced (received, failed and remaining).
RetrieveProgress = Callable[[int, int], None]


class _PendingSeen:
    """The caller's RetrieveProgress (if any), and whether any pending response came."""

    def __init__(self, forward: RetrieveProgress | None) -> None:
        self._forward = forward
        self.seen = False

    def __call__(self, received: int, announced: int) -> None:
        self.seen = True
        if self._forward is not None:
            self._forward(received, announced)


@dataclass(frozen=True)
class RetrieveResult:
    """Sub-operation counts as the remote reported them; `stored`: instances of the requested
    study (or series) in the local index once the retrieval ended, whoever received them."""

    ae_title: str
    completed: int
    failed: int
    warning: int
    stored: int


# -- one association in a thread, under a deadline -------------------------------------------


class _Attempt:
    """What the worker thread learns about its association, shared with the deadline keeper."""

    def __init__(self, remote: RemoteNode) -> None:
        self.remote = remote
        self.assoc: Association | None = None
        self.rejection: str | None = None
        self.accepted = False
        self.expired = False

    def on_open(self, event: Event) -> None:
        self.assoc = event.assoc

    def on_acse(self, event: Event) -> None:
        primitive = getattr(event, "primitive", None)
        if isinstance(primitive, A_ASSOCIATE) and primitive.result in (0x01, 0x02):
            self.rejection = primitive.reason_str
        elif isinstance(primitive, A_ASSOCIATE) and primitive.result == 0x00:
            self.accepted = True

    def abort(self) -> None:
        self.expired = True
        assoc = self.assoc
        if assoc is not None and assoc.is_alive():
            assoc.abort()


async def _in_thread(name: str, work: Callable[[], T]) -> T:
    """Run `work` in a new daemon thread and await its result without blocking the loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def run() -> None:
        outcome: Callable[[], None]
        try:
            outcome = functools.partial(future.set_result, work())
        except BaseException as exc:
            outcome = functools.partial(future.set_exception, exc)
        # RuntimeError: the loop closed while this thread ran, so nobody is waiting.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future


async def _under_deadline(
    remote: RemoteNode, timeout: float, what: str, work: Callable[[_Attempt], T]
) -> T:
    attempt = _Attempt(remote)
    try:
        return await asyncio.wait_for(
            _in_thread(f"scu-{what}-{remote.ae_title}", lambda: work(attempt)), timeout
        )
    except TimeoutError:
        attempt.abort()
        raise RemoteNodeError(remote.ae_title, f"{what} timed out after {timeout:g} s") from None
    except BaseException:
        attempt.abort()
        raise


def _ae(config: Config, timeout: float, dimse_timeout: float | None = None) -> AE:
    """An AE for one outgoing association; no timeout of it may outlast the deadline."""
    dicom = config.dicom
    ae = AE(ae_title=config.node.ae_title)
    ae.maximum_pdu_size = dicom.maximum_pdu_size
    ae.connection_timeout = min(dicom.acse_timeout, timeout)
    ae.acse_timeout = min(dicom.acse_timeout, timeout)
    ae.dimse_timeout = dimse_timeout if dimse_timeout is not None else min(dicom.dimse_timeout,
                                                                           timeout)
    ae.network_timeout = max(ae.dimse_timeout, min(dicom.network_timeout, timeout))
    return ae


def _associate(
    ae: AE, attempt: _Attempt, handlers: list[Any] | None = None, ext_neg: list[Any] | None = None
) -> Association:
    """Associate with the remote, or raise RemoteNodeError saying why not."""
    remote = attempt.remote
    started = time.monotonic()
    assoc = ae.associate(
        remote.host, remote.port, ae_title=remote.ae_title, ext_neg=ext_neg,
        evt_handlers=[(evt.EVT_CONN_OPEN, attempt.on_open),
                      (evt.EVT_ACSE_RECV, attempt.on_acse), *(handlers or [])],
    )
    if assoc.is_established:
        return assoc
    where = f"{remote.host}:{remote.port}"
    if assoc.is_rejected:
        reason = attempt.rejection or "no reason given"
        raise RemoteNodeError(remote.ae_title, f"association rejected by {where}: {reason}")
    if attempt.assoc is None:
        if time.monotonic() - started >= (ae.connection_timeout or 0.0) * 0.9:
            raise RemoteNodeError(remote.ae_title, f"connection to {where} timed out")
        raise RemoteNodeError(remote.ae_title, f"connection to {where} refused or unreachable")
    if attempt.accepted and not attempt.expired:
        raise RemoteNodeError(remote.ae_title, f"association with {where} accepted without any "
                              "presentation context: the service is not supported")
    raise RemoteNodeError(remote.ae_title, f"association request to {where} timed out "
                          f"(no answer within {ae.acse_timeout or 0:g} s)")


def _status_text(status: Dataset, service: str) -> str:
    code = int(status.Status)
    text = f"{service} failed with status 0x{code:04X} ({code_to_category(code)})"
    comment = status.get("ErrorComment")
    return f"{text}: {comment}" if comment else text


# -- C-ECHO ----------------------------------------------------------------------------------


async def echo(config: Config, remote: RemoteNode) -> None:
    """C-ECHO `remote`; RemoteNodeError says what failed (refused, rejected, timed out)."""
    timeout = config.dicom.query_timeout

    def work(attempt: _Attempt) -> None:
        ae = _ae(config, timeout)
        ae.add_requested_context(Verification)
        assoc = _associate(ae, attempt)
        try:
            status = assoc.send_c_echo()
        finally:
            assoc.release()
        if "Status" not in status:
            raise RemoteNodeError(remote.ae_title, "no C-ECHO response (aborted or timed out)")
        if status.Status != STATUS_SUCCESS:
            raise RemoteNodeError(remote.ae_title, _status_text(status, "C-ECHO"))

    await _under_deadline(remote, timeout, "C-ECHO", work)


# -- C-FIND ----------------------------------------------------------------------------------


def query_identifier(level: str, query: Mapping[str, str]) -> Dataset:
    """The C-FIND identifier: the query's keys (DICOM keywords) plus the level's return keys.

    InvalidInput names an unknown level, an unknown keyword, or a value of the wrong kind.
    """
    level = level.upper()
    if level not in LEVELS:
        raise InvalidInput(f"query level must be one of {', '.join(LEVELS)}, not {level!r}",
                           "level")
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in RETURN_KEYS[level]:
        setattr(ds, keyword, "")
    non_ascii = False
    for keyword, value in query.items():
        tag = tag_for_keyword(keyword)
        if tag is None or keyword == "QueryRetrieveLevel":
            raise InvalidInput(f"{keyword!r} is not a DICOM keyword usable as a query key",
                               keyword)
        vr = dictionary_VR(tag)
        if vr == "SQ":
            raise InvalidInput(f"{keyword}: sequence matching is not supported", keyword)
        if vr in _INTEGER_VRS:
            try:
                setattr(ds, keyword, int(value) if value else None)
            except ValueError:
                raise InvalidInput(f"{keyword}: expected an integer, got {value!r}",
                                   keyword) from None
        else:
            setattr(ds, keyword, value)
        non_ascii = non_ascii or not value.isascii()
    if non_ascii:
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _find_on(
    config: Config, attempt: _Attempt, identifier: Dataset, model: str, timeout: float
) -> list[Dataset]:
    ae = _ae(config, timeout)
    ae.add_requested_context(model)
    assoc = _associate(ae, attempt)
    matches: list[Dataset] = []
    try:
        for status, match in assoc.send_c_find(identifier, model):
            if "Status" not in status:
                raise RemoteNodeError(attempt.remote.ae_title,
                                      "C-FIND interrupted (aborted or timed out)")
            category = code_to_category(int(status.Status))
            if category == "Pending":
                if match is not None:
                    matches.append(match)
            elif category in ("Success", "Warning"):
                return matches
            else:
                raise RemoteNodeError(attempt.remote.ae_title, _status_text(status, "C-FIND"))
        raise RemoteNodeError(attempt.remote.ae_title, "C-FIND ended without a final response")
    finally:
        if assoc.is_established:
            assoc.release()


async def find(
    config: Config,
    remotes: Sequence[RemoteNode],
    level: str,
    query: Mapping[str, str],
    timeout: float | None = None,
) -> FindResult:
    """C-FIND on several source nodes at once; each is bounded by `timeout` (default
    config.dicom.query_timeout), so one that is down or silent never holds up the others.

    Study Root for STUDY/SERIES/IMAGE, Patient Root for PATIENT. A node that fails mid-answer
    counts as failed and its partial matches are dropped: an incomplete list would pass for a
    complete one. Bad query keys raise InvalidInput before any node is asked.
    """
    identifier = query_identifier(level, query)
    model = (PatientRootQueryRetrieveInformationModelFind if identifier.QueryRetrieveLevel
             == "PATIENT" else StudyRootQueryRetrieveInformationModelFind)
    limit = config.dicom.query_timeout if timeout is None else timeout

    async def one(remote: RemoteNode) -> list[Dataset]:
        started = time.monotonic()
        matches = await _under_deadline(
            remote, limit, "C-FIND",
            lambda attempt: _find_on(config, attempt, identifier, model, limit),
        )
        log.info("C-FIND %s on %s (keys %s): %d matches in %.0f ms",
                 identifier.QueryRetrieveLevel, remote.ae_title, ",".join(query) or "-",
                 len(matches), (time.monotonic() - started) * 1000)
        return matches

    outcomes = await asyncio.gather(*(one(r) for r in remotes), return_exceptions=True)
    result = FindResult([], [], [])
    for remote, outcome in zip(remotes, outcomes, strict=True):
        if isinstance(outcome, RemoteNodeError):
            log.warning("C-FIND on %s failed: %s", remote.ae_title, outcome)
            result.failed.append(NodeFailure(remote.ae_title, str(outcome).split(": ", 1)[-1]))
        elif isinstance(outcome, BaseException):
            log.error("C-FIND on %s failed unexpectedly", remote.ae_title, exc_info=outcome)
            result.failed.append(NodeFailure(remote.ae_title, f"internal error: {outcome!r}"))
        else:
            result.answered.append(remote.ae_title)
            result.matches.extend((remote.ae_title, match) for match in outcome)
    return result


# -- retrieval -------------------------------------------------------------------------------


def _into_incoming(storage: Storage, path: Path) -> Path:
    """pynetdicom writes received datasets to the default temporary folder; the ingest path
    needs them in incoming/ (same file system as the storage, for the final rename)."""
    if path.parent == storage.incoming:
        return path
    try:
        return storage.copy_to_incoming(path)
    finally:
        path.unlink(missing_ok=True)


def _store_retrieved(event: Event, services: NodeServices) -> int:
    """EVT_C_STORE for instances we retrieve, on a C-GET association or the temporary SCP."""
    sender = event.assoc.requestor.ae_title if event.assoc.is_acceptor else \
        event.assoc.acceptor.ae_title
    try:
        path, _, _, write_error = received_file(event, services.storage.incoming)
        if write_error is not None or path is None:  # the file could not be written
            raise write_error or OSError("no file")
        incoming = _into_incoming(services.storage, path)
        result = services.ingestor.ingest_incoming_blocking(
            incoming, f"retrieve:{sender}", services.config.dicom.dimse_timeout
        )
    except InvalidInput as exc:
        log.warning("retrieved instance from %s refused: %s", sender, exc)
        return STATUS_DATASET_MISMATCH
    except OSError as exc:
        log.error("retrieved instance from %s could not be stored: %s", sender, exc)
        return STATUS_OUT_OF_RESOURCES
    except Exception:
        log.exception("retrieved instance from %s failed", sender)
        return STATUS_CANNOT_UNDERSTAND
    if result.outcome is not AddOutcome.ADDED:
        return STATUS_WARNING_DUPLICATE
    return STATUS_SUCCESS


class _MoveReceiver:
    """The temporary storage SCP a C-MOVE needs when no node serves our port in this process
    or another; shared by the retrievals running at once, closed when the last one ends."""

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None
        self._users = 0
        self._server: ThreadedAssociationServer | None = None

    @contextlib.asynccontextmanager
    async def hold(self, services: NodeServices) -> AsyncIterator[bool]:
        """Yields whether this process started the receiver (False: the port was in use)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._users == 0:
                self._server = self._start(services)
            self._users += 1
        try:
            yield self._server is not None
        finally:
            async with self._lock:
                self._users -= 1
                if self._users == 0 and self._server is not None:
                    server, self._server = self._server, None
                    await asyncio.to_thread(server.shutdown)

    @staticmethod
    def _start(services: NodeServices) -> ThreadedAssociationServer | None:
        config = services.config
        ae = AE(ae_title=config.node.ae_title)
        ae.maximum_pdu_size = config.dicom.maximum_pdu_size
        ae.acse_timeout = config.dicom.acse_timeout
        ae.dimse_timeout = config.dicom.dimse_timeout
        ae.network_timeout = config.dicom.network_timeout
        ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
        fastpath.receive_into(str(services.storage.incoming))
        try:
            server = ae.start_server(
                (config.dicom.bind, config.dicom.port), block=False,
                evt_handlers=[
                    (evt.EVT_C_STORE, _store_retrieved, [services]),
                    # The sender's own syntax first, as on the node's SCP (no C-GET here).
                    (evt.EVT_REQUESTED, SyntaxPreference(lambda after: [])),
                ],
            )
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            log.debug("DICOM port %d in use (the node is serving): C-MOVE goes to it",
                     config.dicom.port)
            return None
        log.info("temporary storage SCP %s on %s:%d for C-MOVE", ae.ae_title,
                 config.dicom.bind, config.dicom.port)
        return server


_move_receiver = _MoveReceiver()


def _retrieve_identifier(study_uid: str, series_uid: str | None) -> Dataset:
    for name, value in (("study UID", study_uid), ("series UID", series_uid)):
        if value is not None and not is_valid_uid(value):
            raise InvalidInput(f"invalid {name} {value!r}", name.replace(" ", "_"))
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
    ds.StudyInstanceUID = study_uid
    if series_uid:
        ds.SeriesInstanceUID = series_uid
    return ds


def _final_status(
    responses: Iterator[tuple[Dataset, Dataset | None]], remote: RemoteNode, service: str,
    progress: RetrieveProgress | None,
) -> Dataset:
    """Consume a C-MOVE/C-GET's responses, telling `progress` of each pending one's counts;
    the final one, or RemoteNodeError on failure."""
    final: Dataset | None = None
    for status, _ in responses:
        if "Status" not in status:
            raise RemoteNodeError(remote.ae_title, f"{service} interrupted (aborted or timed out)")
        if code_to_category(int(status.Status)) != "Pending":
            final = status
        elif progress is not None:
            completed, failed, warning = _counts(status)
            remaining = int(status.get("NumberOfRemainingSuboperations", 0) or 0)
            progress(completed + warning, completed + failed + warning + remaining)
    if final is None:
        raise RemoteNodeError(remote.ae_title, f"{service} ended without a final response")
    return final


def _counts(status: Dataset) -> tuple[int, int, int]:
    return (
        int(status.get("NumberOfCompletedSuboperations", 0) or 0),
        int(status.get("NumberOfFailedSuboperations", 0) or 0),
        int(status.get("NumberOfWarningSuboperations", 0) or 0),
    )


def _move(config: Config, attempt: _Attempt, identifier: Dataset, timeout: float,
          progress: RetrieveProgress | None) -> Dataset:
    ae = _ae(config, timeout, dimse_timeout=timeout)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = _associate(ae, attempt)
    try:
        return _final_status(
            assoc.send_c_move(identifier, config.node.ae_title,
                              StudyRootQueryRetrieveInformationModelMove),
            attempt.remote, "C-MOVE", progress,
        )
    finally:
        if assoc.is_established:
            assoc.release()


def _get(services: NodeServices, attempt: _Attempt, identifier: Dataset, timeout: float,
         progress: RetrieveProgress | None) -> Dataset:
    ae = _ae(services.config, timeout, dimse_timeout=timeout)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for sop_class in GET_STORAGE_SOP_CLASSES:
        ae.add_requested_context(sop_class, GET_TRANSFER_SYNTAXES)
    roles = [build_role(sop_class, scp_role=True) for sop_class in GET_STORAGE_SOP_CLASSES]
    assoc = _associate(ae, attempt, [(evt.EVT_C_STORE, _store_retrieved, [services])], roles)
    try:
        return _final_status(
            assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet),
            attempt.remote, "C-GET", progress,
        )
    finally:
        if assoc.is_established:
            assoc.release()


async def retrieve(
    services: NodeServices, remote: RemoteNode, study_uid: str, series_uid: str | None = None,
    progress: RetrieveProgress | None = None,
) -> RetrieveResult:
    """Retrieve a study (or one series) from `remote` into the node, within
    config.dicom.retrieve_timeout; RemoteNodeError when the remote fails or cannot be reached.
    `progress` is told the counts of each pending response, from the retrieval's thread.

    C-GET: the instances come back on our own association and are ingested by its EVT_C_STORE
    handler. C-MOVE: the remote pushes them to our AE title, so something must listen on our
    DICOM port. Binding that port tells who: when the bind fails because the port is in use,
    the node is serving it (in this process or another one, such as `serve` beside a CLI
    `retrieve`) and its SCP ingests what arrives; otherwise a temporary storage SCP is started
    here for the duration and hands the files to services.ingestor. The remote must map our AE
    title to this host and port, as for any C-MOVE destination.
    """
    identifier = _retrieve_identifier(study_uid, series_uid)
    timeout = services.config.dicom.retrieve_timeout
    started = time.monotonic()
    pending = _PendingSeen(progress)
    if remote.retrieve == "C-GET":
        fastpath.receive_into(str(services.storage.incoming))
        final = await _under_deadline(
            remote, timeout, "C-GET", lambda a: _get(services, a, identifier, timeout, pending)
        )
    else:
        async with _move_receiver.hold(services):
            final = await _under_deadline(
                remote, timeout, "C-MOVE",
                lambda a: _move(services.config, a, identifier, timeout, pending),
            )
    completed, failed, warning = _counts(final)
    code = int(final.Status)
    if code == 0xA801:
        raise RemoteNodeError(
            remote.ae_title,
            f"C-MOVE destination {services.config.node.ae_title} is unknown to "
            f"{remote.ae_title}: add it to its modalities with this node's host and port "
            f"{services.config.dicom.port}",
        )
    if code_to_category(code) not in ("Success", "Warning"):
        # A remote that stops at a failed sub-operation may count nothing in its final answer.
        counts = (f" (completed {completed}, failed {failed}, warning {warning})"
                  if completed or failed or warning else "")
        if remote.retrieve == "C-MOVE" and not counts and not pending.seen and \
                "ErrorComment" not in final:
            # Orthanc, for one, fails a C-MOVE to an AE title it does not know without a word.
            counts = (f" with no instance reported sent: is {services.config.node.ae_title} "
                      f"(port {services.config.dicom.port}) among {remote.ae_title}'s C-MOVE "
                      "destinations?")
        raise RemoteNodeError(remote.ae_title, f"{_status_text(final, remote.retrieve)}{counts}")
    stored = await stored_instance_count(services.sessions, study_uid, series_uid)
    log.info("%s of study %s from %s: completed %d, failed %d, warning %d, %d stored, %.0f ms",
             remote.retrieve, study_uid, remote.ae_title, completed, failed, warning, stored,
             (time.monotonic() - started) * 1000)
    return RetrieveResult(remote.ae_title, completed, failed, warning, stored)
