"""The node's Application Entity as an SCP: which services and transfer syntaxes it accepts."""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from node.config import Config
from node.dimse import fastpath, find_scp, get_scp, move_scp, store_scp
from node.dimse.ae_access import AssociationGate, CallerAccess
from node.dimse.pdu_guard import GuardedServer
from node.dimse.shared_listener import shared_server_class
from node.dimse.syntax_negotiation import SyntaxPreference
from node.index.query import stored_syntaxes_since
from node.process.association_limit import AssociationLimit
from node.process.connection_load import REFRESH_SECONDS, ConnectionLoad
from node.services import NodeServices

log = logging.getLogger(__name__)

QUERY_RETRIEVE_SOP_CLASSES = (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelGet,
)


def build_ae(config: Config) -> AE:
    ae = AE(ae_title=config.node.ae_title)
    ae.maximum_associations = config.dicom.max_associations
    ae.maximum_pdu_size = config.dicom.maximum_pdu_size
    ae.acse_timeout = config.dicom.acse_timeout
    ae.dimse_timeout = config.dicom.dimse_timeout
    ae.network_timeout = config.dicom.network_timeout
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        # Both roles: a C-GET requester proposes storage contexts with itself as SCP, and the
        # node must accept that role to send the sub-operations back.
        ae.add_supported_context(
            str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES, scu_role=True, scp_role=True
        )
    for sop_class in QUERY_RETRIEVE_SOP_CLASSES:
        ae.add_supported_context(sop_class)
    return ae


@dataclass(frozen=True)
class SharedListener:
    """A worker's part in the DICOM port the workers share (node/dimse/shared_listener.py)."""

    listener: socket.socket
    load: ConnectionLoad
    worker: int
    limit: AssociationLimit


class DicomServer:
    """The SCP, started in pynetdicom's threads beside the node's event loop."""

    def __init__(self, services: NodeServices) -> None:
        self.services = services
        self.ae = build_ae(services.config)
        self._server: ThreadedAssociationServer | None = None

    def start(self, shared: SharedListener | None = None) -> None:
        """Listen on the configured address, or serve a worker's share of `shared`.
        pynetdicom is set up already (node/dimse/pynetdicom_setup.py, at the command's start)."""
        services = self.services
        # Received data sets are written in incoming/: placing them is then a link on one file
        # system.
        fastpath.receive_into(str(services.storage.incoming))
        access = CallerAccess.from_config(services.config)
        handlers: list[Any] = [(evt.EVT_C_ECHO, lambda event: 0x0000)]
        for module in (store_scp, find_scp, move_scp, get_scp):
            handlers.extend(module.handlers(services, access))
        # Without the fast path, the node's server class keeps the PDU limits (pdu_guard.py).
        base = ThreadedAssociationServer if fastpath.installed() else GuardedServer
        dicom = services.config.dicom
        if shared is None:
            # One process: pynetdicom's own count of associations is the node's.
            gate = AssociationGate(access)
            server_class: type[ThreadedAssociationServer] = base
        else:
            shared_class = shared_server_class(shared.listener, shared.load, shared.worker,
                                               shared.limit, base)
            gate = AssociationGate(access, shared_class.holds_slot, shared.limit.limit)
            server_class = shared_class
        # After the gate: a rejected association needs no transfer syntaxes.
        handlers.append((evt.EVT_REQUESTED, gate))
        handlers.append((evt.EVT_REQUESTED, SyntaxPreference(
            lambda after: services.run_blocking(stored_syntaxes_since(services.sessions, after),
                                                10.0))))
        if shared is None and base is ThreadedAssociationServer:
            self._server = self.ae.start_server(
                (dicom.bind, dicom.port), block=False, evt_handlers=handlers
            )
        else:
            self._server = self.ae.make_server(
                (dicom.bind, dicom.port), evt_handlers=handlers, server_class=server_class
            )
            threading.Thread(target=self._server.serve_forever, name="DicomAcceptor",
                             kwargs={"poll_interval": REFRESH_SECONDS}, daemon=True).start()
        log.info("DICOM SCP %s listening on %s:%d", self.ae.ae_title, dicom.bind, self.port)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("DICOM server not started")
        return int(self._server.server_address[1])

    def association_count(self) -> int:
        """Associations this SCP serves now."""
        server = self._server
        return len(server.active_associations) if server is not None else 0

    def stop(self) -> None:
        """Stop accepting, let running associations finish, then close."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
