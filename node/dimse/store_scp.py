"""C-STORE SCP: hand each received file to the ingest path and translate the outcome to a status.

The dataset arrives already written to a file in incoming/ (node/dimse/store_receive.py, or
pynetdicom's chunked receive), so the hot path never decodes it: read the header, commit the
index row, rename. Most requests are answered by the DUL thread that read them, without
pynetdicom's service class (node/dimse/store_direct.py); the event handler serves the rest.
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.events import Event

from node import metrics
from node.dimse import store_direct
from node.dimse.ae_access import STATUS_NOT_AUTHORIZED, CallerAccess
from node.dimse.origin import store_origin
from node.dimse.peer_text import peer_address
from node.dimse.store_direct import ReceivedStore
from node.dimse.store_receive import received_head, received_write_error
from node.errors import InvalidInput
from node.index.index_writer import AddOutcome
from node.services import NodeServices

log = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
# PS3.4 B.2.3: warning "coercion of data elements" is the closest standard warning for an
# instance that was received but not stored because the same SOP Instance UID is kept.
STATUS_WARNING_DUPLICATE = 0xB000
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_OUT_OF_RESOURCES = 0xA700


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
        request.path.unlink(missing_ok=True)
        return STATUS_NOT_AUTHORIZED, "calling AE title not authorized"
    if request.write_error is not None:  # the receiver could not write it: nothing to ingest
        return _not_stored(request.sender, request.write_error)
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
    request = ReceivedStore(
        Path(event.dataset_path), event.assoc.requestor.ae_title,
        getattr(event.request, "MoveOriginatorApplicationEntityTitle", None),
        received_head(event.request), peer=peer_address(event.assoc),
        write_error=received_write_error(event.request),
    )
    status, comment = store_received(request, services, access)
    if comment is None:
        return status
    answer = Dataset()
    answer.Status = status
    answer.ErrorComment = comment[:64]
    return answer


def handlers(services: NodeServices, access: CallerAccess) -> list[tuple[Any, ...]]:
    store_direct.register(handle_store, store_received)
    return [(evt.EVT_C_STORE, handle_store, [services, access])]
