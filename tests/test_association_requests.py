"""Association requests on a node of two worker processes: a malformed A-ASSOCIATE-RQ is
aborted and its connection closed at once, and `dicom.max_associations` bounds the whole node,
whichever worker serves an association.

Malformed requests are written on raw sockets, which the test keeps open as a flooding peer
would; the node's acse_timeout is long, so that a connection left to it would be seen.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import struct
import time
from collections.abc import Iterator

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import (
    AsynchronousOperationsWindowNegotiation,
    SCP_SCU_RoleSelectionNegotiation,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityNegotiation,
)
from pynetdicom.sop_class import CTImageStorage, Verification

from tests.peers import NodeProcess, dcmtk
from tests.test_workers import WORKERS, client_port, socket_owner, wait_ready, workers_of

LIMIT = 4
ACSE_TIMEOUT = 60.0
# Far below ACSE_TIMEOUT: the node answers a malformed request as soon as it has read it.
ANSWERED_WITHIN = 10.0


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("associations") / "node", extra={
        "node": {"workers": WORKERS},
        "dicom": {"max_associations": LIMIT, "acse_timeout": ACSE_TIMEOUT},
    }).start()
    wait_ready(process)
    yield process
    process.stop()


def _item(kind: int, value: bytes) -> bytes:
    return struct.pack(">BxH", kind, len(value)) + value


def associate_rq(calling: bytes = b"FLOODER", called: bytes = b"VIEWNODE", version: int = 1,
                 items: bytes | None = None) -> bytes:
    """An A-ASSOCIATE-RQ PDU (PS3.8 9.3.2) asking for Verification, with its length right."""
    if items is None:
        items = (_item(0x10, b"1.2.840.10008.3.1.1.1")
                 + _item(0x20, bytes([1, 0, 0, 0]) + _item(0x30, b"1.2.840.10008.1.1")
                         + _item(0x40, b"1.2.840.10008.1.2"))
                 + _item(0x50, _item(0x51, struct.pack(">I", 16384))
                         + _item(0x52, b"1.2.826.0.1.3680043.9.7433")))
    body = (struct.pack(">HH", version, 0) + called.ljust(16) + calling.ljust(16) + bytes(32)
            + items)
    return struct.pack(">BxI", 0x01, len(body)) + body


def _pdu(body: bytes) -> bytes:
    return struct.pack(">BxI", 0x01, len(body)) + body


def malformed_requests() -> list[bytes]:
    """Forty A-ASSOCIATE-RQ PDUs, each complete (its length says how long it is) and wrong."""
    whole = associate_rq()
    application = _item(0x10, b"1.2.840.10008.3.1.1.1")
    context = _item(0x20, bytes([1, 0, 0, 0]) + _item(0x30, b"1.2.840.10008.1.1")
                    + _item(0x40, b"1.2.840.10008.1.2"))
    user = _item(0x50, _item(0x51, struct.pack(">I", 16384)))
    requests = [_pdu(whole[6:cut]) for cut in (6, 8, 20, 36, 60, 73, 80, 100)]  # cut short
    requests += [associate_rq(calling=title) for title in (
        b"\x1b[2J\x1b[HEVIL", b"\x00" * 16, b"\xff\xfe\xfd", b"A\\B", b"\x07\x08\n", b" " * 16)]
    requests += [associate_rq(called=title) for title in (
        b"\x9b\x1b]0;title\x07", b"NODE\r\nINJECTED", b"\xc3\xa9t\xc3\xa9")]
    requests += [associate_rq(version=version) for version in (0, 2, 0xFFFF)]
    requests += [associate_rq(items=items) for items in (
        application + context,  # no user information
        application + user,  # no presentation context
        application + application + context + user,
        _item(0x10, b"1.2.840.10008.\x00.1") + context + user,
        _item(0x10, b"") + context + user,
        application + _item(0x20, bytes([1, 0, 0, 0]) + _item(0x30, b"CT\x1b[31m")
                            + _item(0x40, b"1.2.840.10008.1.2")) + user,
        application + _item(0x20, bytes([1, 0, 0, 0]) + _item(0x30, b"1.2.840.10008.1.1"))
        + user,  # no transfer syntax
        application + _item(0x20, b"\x01") + user,
        application + context + _item(0x50, _item(0x5F, b"x")),
        application + context + _item(0x50, _item(0x51, b"\x00\x01")),
        application + context + _item(0x99, b"unknown") + user,
        application + context + user[:-2],  # its own length now runs past the end
        struct.pack(">BxH", 0x10, 0xFFFF) + b"1.2",
        application + struct.pack(">BxH", 0x20, 200) + bytes(8) + user,
        application + context + _item(0x50, _item(0x51, struct.pack(">I", 16384))
                                      + _item(0x55, b"\x1b[1mLOUD")),
        application + context + _item(0x50, _item(0x51, struct.pack(">I", 16384))
                                      + _item(0x54, b"\x00\x20short")),
    )]
    rng = random.Random(16)
    while len(requests) < 40:
        requests.append(_pdu(bytes(rng.randrange(256) for _ in range(rng.randrange(68, 300)))))
    return requests


def answer_then_close(sock: socket.socket, deadline: float) -> bytes:
    """What the node writes on `sock` before closing it; fails at `deadline`."""
    received = b""
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            raise AssertionError(f"still open after {ANSWERED_WITHIN} s, received "
                                 f"{received[:16]!r}") from None
        if not chunk:
            return received
        received += chunk


def test_malformed_association_requests_are_aborted_and_free_their_slots_at_once(
        limited: NodeProcess) -> None:
    offset = (limited.folder / "node.log").stat().st_size
    requests = malformed_requests()
    assert len(requests) == 40
    sockets = [socket.create_connection(("127.0.0.1", limited.dicom_port))
               for _ in requests]
    try:
        for sock, request in zip(sockets, requests, strict=True):
            sock.sendall(request)
        deadline = time.monotonic() + ANSWERED_WITHIN
        for sock, request in zip(sockets, requests, strict=True):
            answer = answer_then_close(sock, deadline)
            # A-ABORT, or A-ASSOCIATE-RJ for a protocol version the node does not speak.
            assert answer[:1] in (b"\x07", b"\x03"), (request[:80], answer)
        # The flooder still holds its 40 connections open: the node has let them go.
        echo = dcmtk("echoscu", "-aec", limited.ae_title, "127.0.0.1", str(limited.dicom_port),
                     timeout=ANSWERED_WITHIN)
        assert echo.returncode == 0, echo.stdout + echo.stderr
    finally:
        for sock in sockets:
            sock.close()
    with (limited.folder / "node.log").open("rb") as log:
        log.seek(offset)
        text = log.read().decode("utf-8", errors="replace")
    assert "Traceback" not in text, text
    lines = text.splitlines()
    assert all(line.isprintable() for line in lines), [line for line in lines
                                                       if not line.isprintable()]
    assert len(lines) <= len(requests), "more than one log line for a malformed request"


def test_a_request_with_every_user_information_sub_item_is_accepted(limited: NodeProcess
                                                                    ) -> None:
    """The check of a request's structure refuses no well-formed one: pynetdicom's, with each
    kind of PS3.8 user information sub-item."""
    ae = AE(ae_title="NEGOTIATOR")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 1
    window.maximum_number_operations_performed = 1
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = CTImageStorage
    role.scu_role, role.scp_role = True, True
    extended = SOPClassExtendedNegotiation()
    extended.sop_class_uid = CTImageStorage
    extended.service_class_application_information = b"\x01\x00"
    common = SOPClassCommonExtendedNegotiation()
    common.sop_class_uid = CTImageStorage
    common.service_class_uid = "1.2.840.10008.4.2"
    common.related_general_sop_class_identification = ["1.2.840.10008.5.1.4.1.1.2.1"]
    identity = UserIdentityNegotiation()
    identity.user_identity_type = 2
    identity.primary_field = b"user"
    identity.secondary_field = b"secret"
    assoc = ae.associate("127.0.0.1", limited.dicom_port, ae_title=limited.ae_title,
                         ext_neg=[window, role, extended, common, identity])
    try:
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()


def open_association(node: NodeProcess) -> Association:
    ae = AE(ae_title="HOLDER")
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)


def rejected_for_the_limit(assoc: Association) -> bool:
    answer = assoc.acceptor.primitive
    # rejected transient, by the service provider (presentation), local limit exceeded
    return assoc.is_rejected and answer is not None and (
        answer.result, answer.result_source, answer.diagnostic) == (0x02, 0x03, 0x02)


def accepted_within(node: NodeProcess, seconds: float) -> Association:
    """A new association, once the node has room for it."""
    deadline = time.monotonic() + seconds
    while True:
        assoc = open_association(node)
        if assoc.is_established:
            return assoc
        assert rejected_for_the_limit(assoc), "refused, but not for the limit"
        assert time.monotonic() < deadline, f"no room after {seconds} s"
        time.sleep(0.05)


def hold(node: NodeProcess, count: int) -> list[Association]:
    held = []
    for _ in range(count):
        assoc = accepted_within(node, 10.0)  # room left by an earlier test comes back soon
        held.append(assoc)
    return held


def release_all(held: list[Association]) -> None:
    for assoc in held:
        if assoc.is_established:
            assoc.release()


def test_max_associations_is_one_limit_for_all_workers(limited: NodeProcess) -> None:
    held = hold(limited, LIMIT)
    try:
        pids = workers_of(limited)
        owners = {socket_owner(limited.dicom_port, client_port(assoc), pids) for assoc in held}
        assert len(owners) == WORKERS, "the held associations are not spread over the workers"
        over = open_association(limited)
        assert rejected_for_the_limit(over)
        assert "associations open (dicom.max_associations)" in limited.log_text()
        held.pop(0).release()
        held.append(accepted_within(limited, 5.0))
        assert all(assoc.send_c_echo().Status == 0x0000 for assoc in held)
    finally:
        release_all(held)


def test_the_slots_of_a_worker_that_died_are_given_back(limited: NodeProcess) -> None:
    held = hold(limited, LIMIT)
    try:
        pids = workers_of(limited)
        owners = [socket_owner(limited.dicom_port, client_port(assoc), pids) for assoc in held]
        victim = next(pid for pid in owners if pid is not None)
        os.kill(victim, signal.SIGKILL)
        survivors = [assoc for assoc, owner in zip(held, owners, strict=True)
                     if owner != victim]
        # The associations of the killed worker are gone; their slots come back once the
        # supervisor has seen it die.
        replacements = [accepted_within(limited, 10.0) for _ in range(LIMIT - len(survivors))]
        held = survivors + replacements
        assert rejected_for_the_limit(open_association(limited))
    finally:
        release_all(held)
