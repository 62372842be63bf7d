"""What C-MOVE and C-GET share: reading the identifier, finding the stored files, answering a
bad identifier, running the sub-operations, and sending each file exactly as stored.

pynetdicom's move/get service classes accept only `Dataset` objects from the handler and pass
them to `Association.send_c_store`, which would decode nothing if given a file path (chunked send)
but re-encodes any Dataset. With the fast path in, the handler yields a two-element Dataset
naming the stored file, which its `send_c_store` turns back into the path, so each sub-operation
streams the file from disk without decoding it (node/dimse/fastpath/stored_file_sending.py).
Without it, and when the peer accepted no context with the file's own transfer syntax, the file
is read and handed over decoded: pynetdicom converts between uncompressed syntaxes, and a
compressed file is decompressed first when the peer takes only uncompressed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ImplicitVRLittleEndian
from pynetdicom import _config
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext, build_context

from node.dimse import fastpath
from node.dimse.ae_access import STATUS_NOT_AUTHORIZED, CallerAccess
from node.dimse.fastpath.stored_file_sending import StoredFileDataset
from node.dimse.peer_text import peer_address
from node.dimse.qr_identifier import (
    STATUS_CANCEL,
    STATUS_IDENTIFIER_MISMATCH,
    STATUS_PENDING,
    STATUS_UNABLE_TO_PROCESS,
    failure_status,
    parse_identifier,
)
from node.errors import InvalidInput
from node.index.query import (
    check_retrieve_keys,
    find_instances,
    find_instances_in_thread,
)
from node.index.recycling import mark_instances_used
from node.services import NodeServices

log = logging.getLogger(__name__)

# PS3.8: at most 128 presentation contexts in one association request.
MAX_CONTEXTS = 128


@dataclass(frozen=True, slots=True)
class FileToSend:
    """A stored instance a C-MOVE or C-GET sends: its file and what the index knows of it."""

    path: Path
    sop_class: str
    sop_uid: str
    transfer_syntax: str

    def payload_for(self, assoc: Association) -> Path | Dataset:
        """The file's path when a context with its own transfer syntax was accepted (sent
        without decoding), else the decoded dataset for pynetdicom to convert."""
        accepted = _accepted_syntaxes(assoc, self.sop_class)
        if _config.STORE_SEND_CHUNKED_DATASET and self.transfer_syntax in accepted:
            return self.path
        dataset = dcmread(self.path)
        if UID(self.transfer_syntax).is_compressed and any(
            not UID(ts).is_compressed for ts in accepted
        ):
            # Same pixel values, same instance: keep its SOP Instance UID.
            dataset.decompress(generate_instance_uid=False)
        return dataset


def _accepted_syntaxes(assoc: Association, sop_class: str) -> set[str]:
    return {
        str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts
        if cx.abstract_syntax == sop_class and cx.as_scu
    }


def sub_operation_dataset(stored: FileToSend, assoc: Association | None) -> Dataset:
    """What the handler yields for one sub-operation: pynetdicom's service classes take only
    Datasets. With the fast path in, a two-element Dataset naming the file, which its
    send_c_store sends as stored (node/dimse/fastpath/stored_file_sending.py); without it the
    file decoded, converted for `assoc` (C-GET) where its own syntax was not accepted (for a
    C-MOVE pynetdicom picks among the contexts the destination accepted)."""
    if fastpath.installed():
        return StoredFileDataset(stored)
    payload = stored.payload_for(assoc) if assoc is not None else stored.path
    return dcmread(payload) if isinstance(payload, Path) else payload


def presentation_contexts(files: Iterable[FileToSend]) -> list[PresentationContext]:
    """One context per (SOP class, stored transfer syntax), so every file can go out as stored;
    then, room permitting, Implicit VR Little Endian per SOP class, which every SCP accepts, as
    the fallback for uncompressed files whose own syntax the destination refuses."""
    pairs = sorted({(f.sop_class, f.transfer_syntax) for f in files})
    if len(pairs) > MAX_CONTEXTS:
        log.warning("%d SOP class/transfer syntax pairs: proposing the first %d",
                    len(pairs), MAX_CONTEXTS)
    contexts = [build_context(sop_class, [ts]) for sop_class, ts in pairs[:MAX_CONTEXTS]]
    fallbacks = sorted({
        sop_class for sop_class, ts in pairs
        if ts != ImplicitVRLittleEndian and not UID(ts).is_compressed
        and (sop_class, ImplicitVRLittleEndian) not in pairs
    })
    room = MAX_CONTEXTS - len(contexts)
    contexts += [build_context(sop_class, [ImplicitVRLittleEndian])
                 for sop_class in fallbacks[:room]]
    return contexts


def matching_files(services: NodeServices, identifier: Dataset, sop_class_uid: str,
                   ) -> list[FileToSend]:
    """The stored files a C-MOVE/C-GET identifier names; InvalidInput for a bad identifier."""
    parsed = parse_identifier(identifier, sop_class_uid)
    request = parsed.request
    check_retrieve_keys(request.level, request.keys)
    if services.thread_reader is not None:
        refs = find_instances_in_thread(services.thread_reader, request.level, request.keys)
    else:
        refs = services.run_blocking(
            find_instances(services.sessions, request.level, request.keys),
            services.config.dicom.dimse_timeout,
        )
    if refs:
        # Retrieved is used: the storage quota recycles these studies last. Not waited for.
        asyncio.run_coroutine_threadsafe(_mark_used(services, [ref.sop_uid for ref in refs]),
                                         services.loop)
    paths = services.storage.local_paths([ref.path for ref in refs])
    return [FileToSend(path, ref.sop_class_uid, ref.sop_uid, ref.transfer_syntax)
            for path, ref in zip(paths, refs, strict=True)]


@dataclass
class Retrieval:
    """One C-MOVE or C-GET request: who asked, for what, and what it found (or why not)."""

    service: str  # "C-MOVE" or "C-GET", for the log
    calling: str
    files: list[FileToSend] = field(default_factory=list)
    # The final response when the identifier was refused or the look-up failed.
    failure: Dataset | None = None
    started: float = field(default_factory=time.perf_counter)


def start_retrieval(event: Event, services: NodeServices, service: str,
                    access: CallerAccess) -> Retrieval:
    """Read the request's identifier and find its files; a calling AE title not allowed to
    retrieve (0x0124), a bad identifier (0xA900) or a failed look-up (0xC000) leaves `failure`
    set instead."""
    retrieval = Retrieval(service, event.assoc.requestor.ae_title)
    if access.refuses(service, retrieval.calling, peer_address(event.assoc)):
        retrieval.failure = failure_status(STATUS_NOT_AUTHORIZED,
                                           "calling AE title not authorized")
        return retrieval
    try:
        retrieval.files = matching_files(services, event.identifier,
                                         str(event.request.AffectedSOPClassUID))
    except InvalidInput as exc:
        log.warning("%s from %s refused: %s", service, retrieval.calling, exc)
        retrieval.failure = failure_status(STATUS_IDENTIFIER_MISMATCH, str(exc))
    except Exception:
        log.exception("%s from %s failed", service, retrieval.calling)
        retrieval.failure = failure_status(STATUS_UNABLE_TO_PROCESS, "retrieval failed")
    return retrieval


async def _mark_used(services: NodeServices, sop_uids: list[str]) -> None:
    try:
        await mark_instances_used(services.engine, sop_uids)
    except Exception as exc:  # the order of recycling, not worth failing anything for
        log.warning("could not mark retrieved studies as used: %s", type(exc).__name__)


def sub_operations(event: Event, retrieval: Retrieval, destination: str = "") -> Iterator[Any]:
    """The handler's (status, dataset) yields, one per file, stopping at a C-CANCEL; a C-MOVE
    names its `destination`."""
    files = retrieval.files
    to = f" to {destination}" if destination else ""
    for sent, stored in enumerate(files):
        if event.is_cancelled:
            log.info("%s from %s%s cancelled after %d of %d", retrieval.service,
                     retrieval.calling, to, sent, len(files))
            yield STATUS_CANCEL, None
            return
        yield STATUS_PENDING, sub_operation_dataset(stored, None if destination else event.assoc)
    log.info("%s from %s%s: %d instances in %.1f ms", retrieval.service, retrieval.calling, to,
             len(files), (time.perf_counter() - retrieval.started) * 1000)
