"""The event-driven association loops (node/dimse/fastpath/event_driven_loops.py) under
back-to-back requests.

As a requestor, pynetdicom pauses its association loop for every request and resumes it after
the response; a loop that left its pause late once took a C-STORE response meant for the
caller (the caller then waited out its DIMSE timeout: C-MOVE sub-operations failed). Hundreds
of requests in a row, to DCMTK's storescp (which answers fast) and to the node's own SCP set-up,
must all get their own response at once.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from node.config import Config
from node.dimse.server import build_ae
from tests.factory import StudySpec, make_instance, uid
from tests.fast_path import require_fast_path
from tests.peers import PEER_ENV, free_port, wait_for_port

REQUESTS = 300


@pytest.fixture(scope="module", params=["storescp", "node-ae"])
def scp_port(request: pytest.FixtureRequest) -> Iterator[int]:
    require_fast_path()
    port = free_port()
    if request.param == "storescp":
        proc = subprocess.Popen(["storescp", "--ignore", "-aet", "STORESCP", str(port)],
                                env=PEER_ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, proc=proc)
            yield port
        finally:
            proc.terminate()
            proc.wait(10)
        return
    server = build_ae(Config()).start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[
            (evt.EVT_C_STORE, lambda event: 0x0000),
            (evt.EVT_C_ECHO, lambda event: 0x0000),
        ])
    assert server is not None
    yield port
    server.shutdown()


def requester() -> AE:
    ae = AE(ae_title="REACTORTEST")
    ae.dimse_timeout = 5
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    return ae


def test_back_to_back_echoes_each_get_their_response(scp_port: int) -> None:
    assoc = requester().associate("127.0.0.1", scp_port)
    assert assoc.is_established
    started = time.perf_counter()
    statuses = [assoc.send_c_echo().Status for _ in range(REQUESTS)]
    elapsed = time.perf_counter() - started
    assoc.release()
    assert statuses == [0x0000] * REQUESTS
    # A response taken by the loop would cost the 5 s DIMSE timeout; a loop left idle while
    # a caller waits for it to pause, up to 50 ms a request.
    assert elapsed < 10.0


def test_back_to_back_stores_each_get_their_response(scp_port: int) -> None:
    spec = StudySpec(study_uid=uid(710, 1), rows=8, columns=8)
    datasets: list[Dataset] = [make_instance(spec, 0, i) for i in range(REQUESTS)]
    assoc = requester().associate("127.0.0.1", scp_port)
    assert assoc.is_established
    statuses = [getattr(assoc.send_c_store(ds), "Status", None) for ds in datasets]
    assoc.release()
    assert statuses == [0x0000] * REQUESTS


def test_a_connection_closed_before_any_association_request_ends_at_once() -> None:
    """A port probe (a load balancer's health check) must not stay an open association until
    the ACSE timeout: it counted against max_associations, and against a worker's share of
    new associations (node/dimse/shared_listener.py)."""
    require_fast_path()
    config = Config()
    server = build_ae(config).start_server(("127.0.0.1", 0), block=False, evt_handlers=[])
    assert server is not None and config.dicom.acse_timeout >= 30
    try:
        port = server.server_address[1]
        for _ in range(3):
            wait_for_port(port)  # connects and closes without a word
        deadline = time.monotonic() + 2
        while server.active_associations and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.active_associations == []
    finally:
        server.shutdown()


def test_an_acceptor_serves_a_store_in_its_dul_thread_and_a_find_in_its_own() -> None:
    """A C-STORE is served by the DUL thread that received it (no hand-over to the association
    thread), a C-FIND, which a C-CANCEL may stop, by the association thread as before."""
    require_fast_path()
    served: dict[str, bool] = {}

    def on_store(event: evt.Event) -> int:
        served["store"] = threading.current_thread() is event.assoc.dul
        return 0x0000

    def on_find(event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        served["find"] = threading.current_thread() is event.assoc
        yield 0x0000, None

    server = build_ae(Config()).start_server(("127.0.0.1", 0), block=False, evt_handlers=[
        (evt.EVT_C_STORE, on_store), (evt.EVT_C_FIND, on_find)])
    try:
        ae = requester()
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        assoc = ae.associate("127.0.0.1", server.server_address[1])
        assert assoc.is_established
        spec = StudySpec(study_uid=uid(710, 2), rows=8, columns=8)
        assert assoc.send_c_store(make_instance(spec, 0, 0)).Status == 0x0000
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ""
        statuses = [status.Status for status, _ in assoc.send_c_find(
            query, StudyRootQueryRetrieveInformationModelFind)]
        assoc.release()
    finally:
        server.shutdown()
    assert statuses == [0x0000] and served == {"store": True, "find": True}


def test_a_store_served_longer_than_the_network_timeout_is_not_cut_off() -> None:
    """The network (idle) timeout counts silence between messages: the association thread,
    idle while the DUL thread serves a C-STORE, must not take a slow store for silence."""
    require_fast_path()
    config = Config()
    ae = build_ae(config)
    ae.network_timeout = 0.3

    def slow_store(event: evt.Event) -> int:
        time.sleep(1.0)
        return 0x0000

    server = ae.start_server(("127.0.0.1", 0), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, slow_store)])
    try:
        assoc = requester().associate("127.0.0.1", server.server_address[1])
        assert assoc.is_established
        spec = StudySpec(study_uid=uid(710, 3), rows=8, columns=8)
        status = assoc.send_c_store(make_instance(spec, 0, 0))
        assert getattr(status, "Status", None) == 0x0000 and not assoc.is_aborted
        assoc.release()
    finally:
        server.shutdown()
