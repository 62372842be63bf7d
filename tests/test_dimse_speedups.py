"""pynetdicom hot-path replacements write exactly what pynetdicom would have written."""

from __future__ import annotations

import copy
import gc
import socket
import threading
import warnings
from typing import Any

import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, build_context
from pynetdicom.dsutils import create_file_meta
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA

from node.dimse.fastpath.association_costs import _copy_contexts, _original_set_uid, _set_uid
from node.dimse.fastpath.event_driven_loops import encode_p_data
from node.dimse.fastpath.file_meta import file_meta_bytes
from node.dimse.fastpath.tcp_sockets import _recv
from tests.fast_path import require_fast_path


@pytest.mark.parametrize(
    ("sop_class", "sop_instance", "syntax"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5", "1.2.840.10008.1.2.1"),
        ("1.2.840.10008.5.1.4.1.1.4", "1.2.33.4.55", "1.2.840.10008.1.2"),
        ("1.2.840.10008.5.1.4.1.1.7", "1.2.826.0.1.3680043.10.1011.9.1", "1.2.840.10008.1.2.4.50"),
    ],
)
def test_file_meta_bytes_equal_pydicoms(sop_class: str, sop_instance: str, syntax: str) -> None:
    expected = DicomBytesIO()
    write_file_meta_info(expected, create_file_meta(
        sop_class_uid=UID(sop_class), sop_instance_uid=UID(sop_instance),
        transfer_syntax=UID(syntax),
    ))
    assert file_meta_bytes(sop_class, sop_instance, syntax) == expected.getvalue()


def test_context_copies_equal_deep_copies_and_are_independent() -> None:
    contexts = [build_context("1.2.840.10008.5.1.4.1.1.2", ALL_TRANSFER_SYNTAXES),
                build_context("1.2.840.10008.1.1")]
    contexts[0].scp_role = True
    copies = _copy_contexts(contexts)
    assert copies == copy.deepcopy(contexts)
    copies[0].transfer_syntax.append(UID("1.2.3"))
    copies[1].context_id = 7
    assert "1.2.3" not in contexts[0].transfer_syntax
    assert contexts[1].context_id is None


def test_p_data_bytes_equal_pynetdicoms() -> None:
    for pdvs in ([[1, b"\x03abc"]], [[3, b"\x00" + bytes(range(256)) * 64]],
                 [[1, b"\x01xy"], [5, b"\x02" + b"z" * 1001]]):
        primitive = P_DATA()
        primitive.presentation_data_value_list = pdvs  # type: ignore[assignment]
        assert encode_p_data(primitive) == P_DATA_TF(primitive).encode()


def test_recv_reads_whole_pdus_and_what_arrived_before_a_close() -> None:
    left, right = socket.socketpair()

    class Holder:
        socket = right

    with left, right:
        # Written from another thread: more than a socket buffer holds before it is read.
        writer = threading.Thread(target=left.sendall, args=(bytes(range(256)) * 1000 + b"tail",))
        writer.start()
        assert _recv(Holder(), 256000) == bytes(range(256)) * 1000
        writer.join(10)
        left.close()
        assert _recv(Holder(), 100) == b"tail"


def test_the_association_server_still_collects_the_garbage_of_associations(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """pynetdicom's full collection every 60 accepts stays with the fast path in: without it a
    node's memory rose by ~24 MiB over its first 13,000 associations
    (node/dimse/fastpath/association_costs.py)."""
    collections: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda generation=2: collections.append(generation) or 0)
    require_fast_path()
    ae = AE()
    ae.add_supported_context("1.2.840.10008.1.1")  # Verification
    server = ae.make_server(("127.0.0.1", 0))
    try:
        for _ in range(200):
            server.service_actions()
    finally:
        server.server_close()
    assert collections == [2, 2, 2]


def _outcome(set_uid: Any, value: object) -> tuple[type, object]:
    """What a set_uid gives for `value`: the result's type and value, or the exception's."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns of invalid UIDs it lets through
            result = set_uid(value, "Affected SOP Instance UID")
    except Exception as exc:  # the refusal is part of the outcome
        return type(exc), str(exc)
    return type(result), result


@pytest.mark.parametrize("value", [
    "1.2.840.10008.5.1.4.1.1.2", UID("1.2.826.0.1.3680043.10.1011.9.1"), "0", "1.0.2",
    "1.2.03.4",  # a component with a leading zero: not conformant
    "1.2.a", "1..2",  # not valid either: pynetdicom warns and keeps them
    "1." + "2" * 63,  # 65 characters: refused
    "", None, b"1.2.3\x00",
])
def test_set_uid_gives_what_pynetdicoms_gives(value: object) -> None:
    assert _outcome(_set_uid, value) == _outcome(_original_set_uid, value)
