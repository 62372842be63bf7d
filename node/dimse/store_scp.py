"""C-STORE SCP: hand each received file to the ingest path and translate the outcome to a status.

With the fast path in (node/dimse/fastpath/) the data set arrives already written to a file in
incoming/ (fastpath/store_receiver.py, or pynetdicom's chunked receive), so the hot path never
decodes it: read the header, commit the index row, rename; most requests are answered by the DUL
thread that read them, without pynetdicom's service class (fastpath/store_answer.py, through
DIRECT_FORMS), and the event handler serves the rest. Without the fast path pynetdicom hands the
handler the data set's bytes, which it writes to incoming/ itself: a write that fails (a full
disk) is answered 0xA700 as on the fast path, where pynetdicom's own chunked receive would abort
the association.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.events import Event

from node import metrics
from node.dimse.ae_access import STATUS_NOT_AUTHORIZED, CallerAccess
from node.dimse.origin import store_origin
from node.dimse.peer_text import peer_address
from node.errors import InvalidInput
from node.index.index_writer import AddOutcome
from node.ingest.header_scan import HEAD_BYTES
from node.services import NodeServices

log = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
# PS3.4 B.2.3: warning "coercion of data elements" is the closest standard warning for an
# instance that was received but not stored because the same SOP Instance UID is kept.
STATUS_WARNING_DUPLICATE = 0xB000
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_OUT_OF_RESOURCES = 0xA700

# What the fast path's store receiver attaches to a request it wrote the file of.
HEAD_ATTRIBUTE = "_node_head"  # the file's first bytes
WRITE_ERROR_ATTRIBUTE = "_node_write_error"  # why the file could not be written (it is gone)


@dataclass(frozen=True, slots=True)
class ReceivedStore:
    """A C-STORE request whose data set is in a file in incoming/, read by either path."""

    path: Path | None  # None when no file could be made (then write_error says why)
    sender: str  # the calling AE title
    move_originator: str | None
    head: bytes | None  # the file's first bytes when the receiver kept them
    size: int | None = None  # the file's size when the receiver counted it
    peer: str = "?"  # the requestor's host:port, for the log
    # Why the receiver could not write the file (it is gone then): answered as such.
    write_error: OSError | None = None


def received_head(request: Any) -> bytes | None:
    """The first HEAD_BYTES bytes of a request's file when the fast path's receiver wrote it (so
    that the header scan need not read them back), else None."""
    return getattr(request, HEAD_ATTRIBUTE, None)


def received_write_error(request: Any) -> OSError | None:
    """Why the fast path's receiver could not write a request's file (it is gone), else None."""
    return getattr(request, WRITE_ERROR_ATTRIBUTE, None)


_serial = itertools.count()


def received_file(event: Event, folder: Path) -> tuple[Path | None, bytes | None, int | None,
                                                        OSError | None]:
    """The file of a C-STORE request's data set: pynetdicom's (chunked receive, the fast path
    on), or one written here into `folder` from the bytes pynetdicom kept (plain pynetdicom).
    Returns (path, head, size, write error); a file that could not be written is gone."""
    try:
        path = event.dataset_path
    except AttributeError:
        path = None
    if path is not None:
        return Path(path), received_head(event.request), None, received_write_error(event.request)
    data = event.encoded_dataset(include_meta=True)
    target = folder / f"{os.getpid()}-{secrets.token_hex(4)}-{next(_serial)}.dcm"
    try:
        with open(target, "xb") as f:
            f.write(data)
    except OSError as exc:
        target.unlink(missing_ok=True)
        return None, None, None, exc
    return target, data[:HEAD_BYTES], len(data), None


def store_received(request: ReceivedStore, services: NodeServices, access: CallerAccess
                   ) -> tuple[int, str | None]:
    """Ingest the request's file (it is consumed: stored or deleted); the status to answer and
    its error comment."""
    status, comment = _store(request, services, access)
    if (status >= 0xA000 and status & 0xF000 != 0xB000) or status == STATUS_NOT_AUTHORIZED:
        metrics.store_failure(status)
    return status, comment


def _store(request: ReceivedStore, services: NodeServices, access: CallerAccess
           ) -> tuple[int, str | None]:
    if access.refuses("C-STORE", request.sender, request.peer):
        if request.path is not None:
            request.path.unlink(missing_ok=True)
        return STATUS_NOT_AUTHORIZED, "calling AE title not authorized"
    if request.write_error is not None or request.path is None:  # nothing to ingest
        return _not_stored(request.sender, request.write_error or OSError("no file"))
    try:
        result = services.ingestor.ingest_incoming_blocking(
            request.path,
            store_origin(request.sender, request.move_originator, services.config.node.ae_title),
            services.config.dicom.dimse_timeout, request.head, request.size,
        )
    except InvalidInput as exc:
        log.warning("C-STORE from %s refused: %s", request.sender, exc)
        return STATUS_DATASET_MISMATCH, str(exc)
    except OSError as exc:
        return _not_stored(request.sender, exc)
    except Exception:
        log.exception("C-STORE from %s failed", request.sender)
        return STATUS_CANNOT_UNDERSTAND, "internal error while storing"
    if result.outcome is AddOutcome.DUPLICATE_KEPT:
        return STATUS_WARNING_DUPLICATE, "duplicate SOP Instance UID: stored one kept"
    if result.outcome is AddOutcome.DUPLICATE_REPLACED:
        return STATUS_WARNING_DUPLICATE, "duplicate SOP Instance UID: replaced"
    return STATUS_SUCCESS, None


def _not_stored(sender: str, error: OSError) -> tuple[int, str]:
    """Out of resources: a status the sender may try again after, where an A-ABORT would have
    it give up on the whole association."""
    log.error("C-STORE from %s could not be stored: %s", sender, error)
    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    return STATUS_OUT_OF_RESOURCES, "storage full" if full else "storage error"


def handle_store(event: Event, services: NodeServices, access: CallerAccess
                 ) -> Dataset | int:
    """The requests pynetdicom serves itself. Success is answered as a bare status code:
    pynetdicom accepts it, and a status Dataset for every stored instance cost ~5% of the
    handler thread's time."""
    path, head, size, write_error = received_file(event, services.storage.incoming)
    request = ReceivedStore(
        path, event.assoc.requestor.ae_title,
        getattr(event.request, "MoveOriginatorApplicationEntityTitle", None),
        head, size, peer=peer_address(event.assoc), write_error=write_error,
    )
    status, comment = store_received(request, services, access)
    if comment is None:
        return status
    answer = Dataset()
    answer.Status = status
    answer.ErrorComment = comment[:64]
    return answer


# The handler's direct form: (request, *the handler's bound args) -> (status, error comment).
# It must consume the file (store or delete it), as pynetdicom will not delete it afterwards.
DirectStore = Callable[..., tuple[int, str | None]]
# The fast path answers a request bound to one of these handlers with its direct form, without
# pynetdicom's service class (node/dimse/fastpath/store_answer.py).
DIRECT_FORMS: dict[Callable[..., Any], DirectStore] = {handle_store: store_received}


def handlers(services: NodeServices, access: CallerAccess) -> list[tuple[Any, ...]]:
    return [(evt.EVT_C_STORE, handle_store, [services, access])]
