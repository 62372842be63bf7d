"""C-GET SCP: send the matching stored files back over the requester's own association.

The requester proposes the storage contexts (with the SCP role for itself); syntax_negotiation picks
their transfer syntaxes. A file goes out as stored when its own syntax was accepted, converted
(decompressed if need be) when an uncompressed one was, and fails as a sub-operation otherwise
(the node does not compress).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from pynetdicom import evt
from pynetdicom.events import Event

from node.dimse.qr_identifier import (
    STATUS_CANCEL,
    STATUS_IDENTIFIER_MISMATCH,
    STATUS_PENDING,
    STATUS_UNABLE_TO_PROCESS,
    failure_status,
)
from node.dimse.retrieve import install_stored_file_sending, matching_files
from node.dimse.syntax_negotiation import install_syntax_negotiation
from node.errors import InvalidInput
from node.index.query import stored_syntaxes_since
from node.services import NodeServices

log = logging.getLogger(__name__)


def handle_get(event: Event, services: NodeServices) -> Iterator[Any]:
    calling = event.assoc.requestor.ae_title
    started = time.perf_counter()
    try:
        files = matching_files(services, event.identifier, str(event.request.AffectedSOPClassUID))
    except InvalidInput as exc:
        log.warning("C-GET from %s refused: %s", calling, exc)
        # pynetdicom takes a failure status only after a non-zero sub-operation count.
        yield 1
        yield failure_status(STATUS_IDENTIFIER_MISMATCH, str(exc)), None
        return
    except Exception:
        log.exception("C-GET from %s failed", calling)
        yield 1
        yield failure_status(STATUS_UNABLE_TO_PROCESS, "retrieval failed"), None
        return
    yield len(files)
    for sent, stored in enumerate(files):
        if event.is_cancelled:
            log.info("C-GET from %s cancelled after %d of %d", calling, sent, len(files))
            yield STATUS_CANCEL, None
            return
        yield STATUS_PENDING, stored
    log.info("C-GET from %s: %d instances in %.1f ms", calling, len(files),
             (time.perf_counter() - started) * 1000)


def handlers(services: NodeServices) -> list[tuple[Any, ...]]:
    install_stored_file_sending()
    install_syntax_negotiation(
        lambda after: services.run_blocking(stored_syntaxes_since(services.sessions, after), 10.0)
    )
    return [(evt.EVT_C_GET, handle_get, [services])]
