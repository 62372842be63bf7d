"""C-MOVE SCP: send the matching stored files to a configured destination, as they are stored.

Destinations are only those in `move_destinations`: an unknown AE title gets 0xA801 (pynetdicom
answers it when the handler yields no address).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from pynetdicom import evt
from pynetdicom.events import Event
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification

from node import metrics
from node.dimse.ae_access import CallerAccess
from node.dimse.peer_text import peer_address, printable
from node.dimse.retrieve import presentation_contexts, start_retrieval, sub_operations
from node.services import NodeServices

log = logging.getLogger(__name__)


@metrics.dimse_timed("C-MOVE")
def handle_move(event: Event, services: NodeServices, access: CallerAccess) -> Iterator[Any]:
    destination_ae = str(event.move_destination or "").strip()
    destination = services.config.move_destination(destination_ae)
    if destination is None:
        log.warning("C-MOVE from %s (%s) to unknown destination %s refused",
                    printable(event.assoc.requestor.ae_title), peer_address(event.assoc),
                    printable(repr(destination_ae)))
        yield None, None
        return
    address = (destination.host, destination.port)
    retrieval = start_retrieval(event, services, "C-MOVE", access)
    if retrieval.failure is not None:
        # pynetdicom takes a failure status only after the destination and a non-zero count,
        # and then opens the destination association: propose Verification alone. (A caller
        # not allowed to retrieve also makes the node open one, to a destination of node.toml:
        # any other answer pynetdicom allows here says something untrue, "destination unknown"
        # or "success, nothing sent".)
        yield (*address, {"contexts": [build_context(Verification)]})
        yield 1
        yield retrieval.failure, None
        return
    contexts = presentation_contexts(retrieval.files)
    yield (*address, {"contexts": contexts} if contexts else {})
    yield len(retrieval.files)
    yield from sub_operations(event, retrieval, destination_ae)


def handlers(services: NodeServices, access: CallerAccess) -> list[tuple[Any, ...]]:
    return [(evt.EVT_C_MOVE, handle_move, [services, access])]
