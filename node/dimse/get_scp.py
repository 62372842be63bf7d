"""C-GET SCP: send the matching stored files back over the requester's own association.

The requester proposes the storage contexts (with the SCP role for itself); syntax_negotiation picks
their transfer syntaxes. A file goes out as stored when its own syntax was accepted, converted
(decompressed if need be) when an uncompressed one was, and fails as a sub-operation otherwise
(the node does not compress).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pynetdicom import evt
from pynetdicom.events import Event

from node import metrics
from node.dimse.ae_access import CallerAccess
from node.dimse.retrieve import start_retrieval, sub_operations
from node.services import NodeServices


@metrics.dimse_timed("C-GET")
def handle_get(event: Event, services: NodeServices, access: CallerAccess) -> Iterator[Any]:
    retrieval = start_retrieval(event, services, "C-GET", access)
    if retrieval.failure is not None:
        # pynetdicom takes a failure status only after a non-zero sub-operation count.
        yield 1
        yield retrieval.failure, None
        return
    yield len(retrieval.files)
    yield from sub_operations(event, retrieval)


def handlers(services: NodeServices, access: CallerAccess) -> list[tuple[Any, ...]]:
    return [(evt.EVT_C_GET, handle_get, [services, access])]
