"""C-MOVE SCP: send the matching stored files to a configured destination, as they are stored.

Destinations are only those in `move_destinations`: an unknown AE title gets 0xA801 (pynetdicom
answers it when the handler yields no address).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from pynetdicom import evt
from pynetdicom.events import Event
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification

from node.dimse.qr_identifier import (
    STATUS_CANCEL,
    STATUS_IDENTIFIER_MISMATCH,
    STATUS_PENDING,
    STATUS_UNABLE_TO_PROCESS,
    failure_status,
)
from node.dimse.retrieve import install_stored_file_sending, matching_files, presentation_contexts
from node.errors import InvalidInput
from node.services import NodeServices

log = logging.getLogger(__name__)


def handle_move(event: Event, services: NodeServices) -> Iterator[Any]:
    calling = event.assoc.requestor.ae_title
    started = time.perf_counter()
    destination_ae = str(event.move_destination or "").strip()
    destination = services.config.move_destination(destination_ae)
    if destination is None:
        log.warning("C-MOVE from %s to unknown destination %r refused", calling, destination_ae)
        yield None, None
        return
    address = (destination.host, destination.port)
    try:
        files = matching_files(services, event.identifier, str(event.request.AffectedSOPClassUID))
    except Exception as exc:
        refused = isinstance(exc, InvalidInput)
        if refused:
            log.warning("C-MOVE from %s refused: %s", calling, exc)
        else:
            log.exception("C-MOVE from %s failed", calling)
        # pynetdicom takes a failure status only after the destination and a non-zero count,
        # and then opens the destination association: propose Verification alone.
        yield (*address, {"contexts": [build_context(Verification)]})
        yield 1
        yield (failure_status(STATUS_IDENTIFIER_MISMATCH, str(exc)) if refused
               else failure_status(STATUS_UNABLE_TO_PROCESS, "retrieval failed")), None
        return
    contexts = presentation_contexts(files)
    yield (*address, {"contexts": contexts} if contexts else {})
    yield len(files)
    for sent, stored in enumerate(files):
        if event.is_cancelled:
            log.info("C-MOVE from %s cancelled after %d of %d", calling, sent, len(files))
            yield STATUS_CANCEL, None
            return
        yield STATUS_PENDING, stored
    log.info("C-MOVE from %s to %s: %d instances in %.1f ms", calling, destination_ae,
             len(files), (time.perf_counter() - started) * 1000)


def handlers(services: NodeServices) -> list[tuple[Any, ...]]:
    install_stored_file_sending()
    return [(evt.EVT_C_MOVE, handle_move, [services])]
