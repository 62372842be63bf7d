"""Which peers the node serves: calling AE titles per service (`dicom.query_from`,
`dicom.store_from`) and the called AE title (`dicom.check_called_ae`).

The node here leaves query_from at its default (its source node and its move destination may
query, nobody else), lets MODALITY store (besides its source node), and checks the called AE
title. Requests come from pynetdicom, so that each status and rejection reason can be read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from tests.factory import StudySpec, make_instance, uid
from tests.index_db import rows
from tests.peers import NodeProcess, StoreSCP, dcmtk, free_port, incoming_files

GUARDED = "GUARDED"
PACS = "PACS"  # the node's source node: only a name here, nothing listens at its address
MODALITY = "MODALITY"  # in store_from, not in query_from
WORKSTATION = "WORKSTATION"  # in neither
NOT_AUTHORIZED = 0x0124
SUCCESS = 0x0000


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, storescp: StoreSCP
            ) -> Iterator[NodeProcess]:
    process = NodeProcess(
        tmp_path_factory.mktemp("callers") / "node", ae_title=GUARDED, query_from=None,
        source_nodes=[{"ae_title": PACS, "host": "127.0.0.1", "port": free_port()}],
        move_destinations=[{"ae_title": storescp.ae_title, "host": "127.0.0.1",
                            "port": storescp.port}],
        extra={"node": {"workers": 1},
               "dicom": {"store_from": [MODALITY], "check_called_ae": True}},
    ).start()
    yield process
    process.stop()


@contextmanager
def association(node: NodeProcess, calling: str, called: str = GUARDED
                ) -> Iterator[Association]:
    ae = AE(ae_title=calling)
    for context in (Verification, StudyRootQueryRetrieveInformationModelFind,
                    StudyRootQueryRetrieveInformationModelMove,
                    StudyRootQueryRetrieveInformationModelGet):
        ae.add_requested_context(context)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", node.dicom_port, ae_title=called)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def study_query() -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    return query


def study_retrieval() -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = uid(1606)
    return query


def final_status(responses: Iterator[tuple[Dataset, Dataset | None]]) -> int:
    statuses = [int(status.Status) for status, _ in responses if "Status" in status]
    assert statuses, "no response"
    return statuses[-1]


def log_size(node: NodeProcess) -> int:
    return (node.folder / "node.log").stat().st_size


def log_since(node: NodeProcess, offset: int) -> str:
    with (node.folder / "node.log").open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def rejection(assoc: Association) -> tuple[int, int, int]:
    assert assoc.is_rejected
    answer = assoc.acceptor.primitive
    assert answer is not None
    return (answer.result, answer.result_source, answer.diagnostic)


def test_a_calling_ae_title_outside_query_from_gets_c_find_refused_not_authorized(
        guarded: NodeProcess) -> None:
    offset = log_size(guarded)
    with association(guarded, MODALITY) as assoc:
        assert assoc.is_established
        status = final_status(assoc.send_c_find(study_query(),
                                                StudyRootQueryRetrieveInformationModelFind))
        assert status == NOT_AUTHORIZED
        assert assoc.send_c_echo().Status == SUCCESS  # the association goes on
    lines = [line for line in log_since(guarded, offset).splitlines() if "refused" in line]
    assert len(lines) == 1, lines
    assert re.search(rf"C-FIND from {MODALITY} \(127\.0\.0\.1:\d+\) refused", lines[0]), lines


@pytest.mark.parametrize("calling", [PACS, "STORESCP"])
def test_the_source_nodes_and_move_destinations_may_query_by_default(
        guarded: NodeProcess, calling: str) -> None:
    with association(guarded, calling) as assoc:
        assert assoc.is_established
        assert final_status(assoc.send_c_find(
            study_query(), StudyRootQueryRetrieveInformationModelFind)) == SUCCESS


def test_c_move_and_c_get_outside_query_from_are_refused_not_authorized(
        guarded: NodeProcess, storescp: StoreSCP) -> None:
    offset = log_size(guarded)
    with association(guarded, MODALITY) as assoc:
        assert assoc.is_established
        assert final_status(assoc.send_c_move(
            study_retrieval(), storescp.ae_title,
            StudyRootQueryRetrieveInformationModelMove)) == NOT_AUTHORIZED
        assert final_status(assoc.send_c_get(
            study_retrieval(), StudyRootQueryRetrieveInformationModelGet)) == NOT_AUTHORIZED
    text = log_since(guarded, offset)
    for service in ("C-MOVE", "C-GET"):
        assert len(re.findall(rf"{service} from {MODALITY} \(127\.0\.0\.1:\d+\) refused",
                              text)) == 1, text


def test_a_calling_ae_title_outside_store_from_gets_c_store_refused_not_authorized(
        guarded: NodeProcess) -> None:
    spec = StudySpec(study_uid=uid(1607), patient_id="CALLERS-1607")
    refused, stored = make_instance(spec, 0, 0), make_instance(spec, 0, 1)
    offset = log_size(guarded)
    # STORESCP is a move destination: it may query, not store.
    with association(guarded, "STORESCP") as assoc:
        assert assoc.is_established
        assert assoc.send_c_store(refused).Status == NOT_AUTHORIZED
    with association(guarded, MODALITY) as assoc:
        assert assoc.send_c_store(stored).Status == SUCCESS
    indexed = {sop for (sop,) in rows(guarded.data_dir, "SELECT sop_uid FROM instances")}
    assert str(stored.SOPInstanceUID) in indexed
    assert str(refused.SOPInstanceUID) not in indexed
    assert incoming_files(guarded.data_dir) == []
    assert re.search(r"C-STORE from STORESCP \(127\.0\.0\.1:\d+\) refused",
                     log_since(guarded, offset))


def test_a_calling_ae_title_allowed_no_service_is_rejected_at_association(
        guarded: NodeProcess) -> None:
    offset = log_size(guarded)
    with association(guarded, WORKSTATION) as assoc:
        # rejected permanent, by the service user, calling AE title not recognized
        assert rejection(assoc) == (0x01, 0x01, 0x03)
    lines = [line for line in log_since(guarded, offset).splitlines() if "rejected" in line]
    assert len(lines) == 1, lines
    assert re.search(rf"from 127\.0\.0\.1:\d+, calling AE {WORKSTATION}, called AE {GUARDED} "
                     "rejected", lines[0]), lines


def test_check_called_ae_rejects_an_association_called_another_ae_title(
        guarded: NodeProcess) -> None:
    with association(guarded, MODALITY, called="ELSEWHERE") as assoc:
        # rejected permanent, by the service user, called AE title not recognized
        assert rejection(assoc) == (0x01, 0x01, 0x07)
    with association(guarded, MODALITY) as assoc:
        assert assoc.is_established
        assert assoc.send_c_echo().Status == SUCCESS


def test_without_check_called_ae_any_called_ae_title_is_answered(node: NodeProcess) -> None:
    echo = dcmtk("echoscu", "-aec", "ANY-TITLE", "127.0.0.1", str(node.dicom_port))
    assert echo.returncode == 0, echo.stderr

