"""Which peers the node serves, and what each may ask: the called AE title
(`dicom.check_called_ae`) and, per calling AE title, querying and retrieving (`dicom.query_from`)
and storing (`dicom.store_from`).

What is known when an association is requested is decided then, with an A-ASSOCIATE-RJ the
requestor reports as such (PS3.8 9.3.4): a called AE title that is not the node's, a calling AE
title allowed no service at all, the node's association limit reached (worker processes,
node/dimse/shared_listener.py). A calling AE title allowed one service but not another (a
modality that stores but may not query) gets its association, and each request for the other
service the failure status STATUS_NOT_AUTHORIZED; C-ECHO is answered on every association
accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pynetdicom.events import Event

from node.config import Config
from node.dimse.peer_text import peer_address, printable

log = logging.getLogger(__name__)

ANY_CALLER = "*"
# "Refused: Not Authorized" (PS3.7 Annex C, a status of every DIMSE service). Not 0xA700 "Refused:
# Out of Resources", which tells the requestor to try again later: this refusal is permanent until
# someone changes node.toml, and the status says so to the requestor's operator. pynetdicom and
# DCMTK both know it as a failure for C-STORE, C-FIND, C-MOVE and C-GET.
STATUS_NOT_AUTHORIZED = 0x0124
QUERY_SERVICES = ("C-FIND", "C-MOVE", "C-GET")

# A-ASSOCIATE-RJ (result, source, reason), PS3.8 9.3.4.
REJECT_CALLING_AE = (0x01, 0x01, 0x03)  # permanent, service user, calling AE not recognized
REJECT_CALLED_AE = (0x01, 0x01, 0x07)  # permanent, service user, called AE not recognized
# transient, service provider (presentation), local limit exceeded: what pynetdicom answers
# when its own count of associations is over AE.maximum_associations.
REJECT_LIMIT = (0x02, 0x03, 0x02)


def _titles(configured: Iterable[str], always: Iterable[str]) -> frozenset[str] | None:
    """The calling AE titles allowed; None for any."""
    listed = set(configured)
    return None if ANY_CALLER in listed else frozenset(listed | set(always))


@dataclass(frozen=True)
class CallerAccess:
    """The node's AE title and which calling AE titles may query (C-FIND, C-MOVE, C-GET) and
    store (C-STORE); None for any."""

    node_ae_title: str
    check_called_ae: bool
    query: frozenset[str] | None
    store: frozenset[str] | None

    @classmethod
    def from_config(cls, config: Config) -> CallerAccess:
        """Source nodes may always store (they answer the node's retrievals with C-STORE) and
        query; move destinations may always query (a workstation the node sends to asks what
        there is)."""
        sources = [node.ae_title for node in config.source_nodes]
        destinations = [dest.ae_title for dest in config.move_destinations]
        dicom = config.dicom
        return cls(config.node.ae_title, dicom.check_called_ae,
                   _titles(dicom.query_from, sources + destinations),
                   _titles(dicom.store_from, sources))

    def may(self, service: str, calling_ae_title: str) -> bool:
        allowed = self.store if service == "C-STORE" else self.query
        return allowed is None or calling_ae_title.strip() in allowed

    def refuses(self, service: str, calling_ae_title: str, peer: str) -> bool:
        """Whether `calling_ae_title` may not use `service` ("C-FIND", "C-MOVE", "C-GET",
        "C-STORE"); a refusal is logged, once, with the requestor's host:port `peer`."""
        if self.may(service, calling_ae_title):
            return False
        key = "store_from" if service == "C-STORE" else "query_from"
        log.warning("%s from %s (%s) refused: calling AE title not in dicom.%s", service,
                    printable(calling_ae_title), peer, key)
        return True

    def rejection(self, calling: str, called: str) -> tuple[tuple[int, int, int], str] | None:
        """The A-ASSOCIATE-RJ values and the reason for the log, or None to go on."""
        if self.check_called_ae and called.strip() != self.node_ae_title:
            return REJECT_CALLED_AE, "called AE title is not node.ae_title"
        if not any(self.may(service, calling) for service in ("C-STORE", "C-FIND")):
            return REJECT_CALLING_AE, "calling AE title in neither dicom.query_from nor " \
                "dicom.store_from"
        return None


class AssociationGate:
    """The EVT_REQUESTED handler: each association request is accepted or rejected here,
    before pynetdicom negotiates its presentation contexts."""

    def __init__(self, access: CallerAccess,
                 has_slot: Callable[[Any], bool] | None = None, limit: int = 0) -> None:
        """`has_slot(assoc)` tells whether the association holds one of the node's `limit`
        association slots (several worker processes); None when pynetdicom's own count is the
        node's (one process)."""
        self.access = access
        self.has_slot = has_slot
        self.limit = limit

    def __call__(self, event: Event) -> None:
        assoc = event.assoc
        request = assoc.requestor.primitive
        if request is None:  # pynetdicom triggers the event only with the request received
            return
        calling = str(request.calling_ae_title)
        called = str(request.called_ae_title)
        refusal = self.access.rejection(calling, called)
        if refusal is None and self.has_slot is not None and not self.has_slot(assoc):
            refusal = REJECT_LIMIT, f"{self.limit} associations open (dicom.max_associations)"
        if refusal is None:
            return
        (result, source, reason), why = refusal
        log.warning("association from %s, calling AE %s, called AE %s rejected: %s",
                    peer_address(assoc), printable(calling.strip()),
                    printable(called.strip()), why)
        assoc.acse.send_reject(result, source, reason)
        # As pynetdicom after its own rejections: the thread ends once the A-ASSOCIATE-RJ has
        # left (node/dimse/fastpath/event_driven_loops.py then closes the connection at once).
        assoc.kill()
