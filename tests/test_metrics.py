"""GET /metrics on a node of two worker processes, read with prometheus-client's own parser:
every worker's counts add up to the node's, and the figures match what was done."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts
from pynetdicom.association import Association
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from tests.factory import StudySpec, make_instance, uid
from tests.index_db import rows
from tests.peers import NodeProcess
from tests.rest_support import API_KEY, running_app
from tests.test_workers import (
    WORKERS,
    client_port,
    socket_owner,
    wait_ready,
    workers_idle,
    workers_of,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("metrics") / "node", query_from=("METRICS",),
                          extra={"node": {"workers": WORKERS}}).start()
    wait_ready(process)
    yield process
    process.stop()


def metrics_text(node: NodeProcess, key: str | None = None) -> str:
    request = urllib.request.Request(f"{node.http_url}/metrics",
                                     headers={"Authorization": key or node.api_key})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return str(response.read().decode())


def scrape(node: NodeProcess) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(metrics_text(node)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (sample, found), value in samples.items()
               if sample == name and wanted <= found)


def poll(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def open_associations(node: NodeProcess, count: int) -> list[Association]:
    """`count` associations opened at once (the workers share them out evenly)."""
    ae = AE(ae_title="METRICS")
    ae.requested_contexts = StoragePresentationContexts[:100]
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    start = threading.Barrier(count, timeout=10)

    def associate() -> Association:
        start.wait()
        return ae.associate("127.0.0.1", node.dicom_port, ae_title=node.ae_title)

    workers_idle(node)  # both have published that they serve nothing, so both take a share
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        associations = list(pool.map(lambda _: associate(), range(count)))
    assert all(assoc.is_established for assoc in associations)
    return associations


def test_metrics_need_the_api_key(node: NodeProcess) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{node.http_url}/metrics", timeout=10)
    assert refused.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as wrong:
        metrics_text(node, key="not-the-key")
    assert wrong.value.code == 401


async def test_metrics_are_public_when_configured(tmp_path: Path) -> None:
    async with running_app(tmp_path, http={"metrics_public": True}) as api:
        response = await api.client.get("/metrics")
        assert response.status == 200
        names = {f.name for f in text_string_to_metric_families(await response.text())}
        assert {"viewnode_stored_bytes", "viewnode_stored_studies"} <= names
    async with running_app(tmp_path / "closed") as api:
        assert (await api.client.get("/metrics")).status == 401
        assert (await api.get("/metrics", key=API_KEY)).status == 200


def test_c_stores_on_both_workers_add_up_to_what_was_sent(node: NodeProcess) -> None:
    before = scrape(node)
    associations = open_associations(node, 4)
    try:
        owners = {socket_owner(node.dicom_port, client_port(assoc), workers_of(node))
                  for assoc in associations}
        assert len(owners) == WORKERS, "the associations did not reach both workers"
        poll(lambda: total(scrape(node), "viewnode_associations_open") == 4)
        sent = 0
        for index, assoc in enumerate(associations):
            spec = StudySpec(study_uid=uid(7700 + index), patient_id=f"METRICS{index}")
            for instance in range(5 + index):
                assert assoc.send_c_store(make_instance(spec, 0, instance)).Status == 0x0000
                sent += 1
    finally:
        for assoc in associations:
            assoc.release()
    after = scrape(node)
    received = (total(after, "viewnode_instances_received_total", door="c-store")
                - total(before, "viewnode_instances_received_total", door="c-store"))
    assert received == sent == 26
    [(instances, size)] = rows(node.data_dir, "SELECT count(*), sum(size) FROM instances")
    assert total(after, "viewnode_stored_instances") == instances
    assert total(after, "viewnode_stored_bytes") == size
    assert total(after, "viewnode_stored_studies") >= 4
    poll(lambda: total(scrape(node), "viewnode_associations_open") == 0)


def test_a_refused_c_store_is_counted_by_its_status(node: NodeProcess) -> None:
    before = scrape(node)
    [assoc] = open_associations(node, 1)
    try:
        broken = make_instance(StudySpec(study_uid=uid(7710)), 0, 0)
        del broken.StudyInstanceUID
        assert assoc.send_c_store(broken).Status == 0xA900
    finally:
        assoc.release()
    after = scrape(node)
    for name, labels in (("viewnode_store_failures_total", {"status": "0xA900"}),
                         ("viewnode_instances_failed_total", {"door": "c-store"})):
        assert total(after, name, **labels) - total(before, name, **labels) == 1


def test_c_finds_are_counted_and_timed(node: NodeProcess) -> None:
    before = scrape(node)
    [assoc] = open_associations(node, 1)
    try:
        for _ in range(3):
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyInstanceUID = ""
            responses = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
            assert responses[-1][0].Status == 0x0000
    finally:
        assoc.release()
    after = scrape(node)
    count = "viewnode_dimse_request_duration_seconds_count"
    seconds = "viewnode_dimse_request_duration_seconds_sum"
    assert total(after, count, service="C-FIND") - total(before, count, service="C-FIND") == 3
    assert total(after, seconds, service="C-FIND") > total(before, seconds, service="C-FIND")


def test_tokens_issued_redeemed_and_refused_are_counted(node: NodeProcess) -> None:
    assert node.cli("role", "add", "metrics-role", "--allow", "search").returncode == 0
    before = scrape(node)
    tokens = []
    for _ in range(2):
        request = urllib.request.Request(
            f"{node.http_url}/ngv/obscurl?username=m&role=metrics-role&sourceNodes=&"
            f"studyUID={uid(7700)}", headers={"Authorization": node.api_key})
        with urllib.request.urlopen(request, timeout=30) as response:
            tokens.append(response.read().decode())

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)

    def redeem(token: str) -> int:
        try:
            with opener.open(f"{node.http_url}/ngv?q={token}", timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert redeem(tokens[0]) == 302
    assert redeem(tokens[0]) == 403
    assert redeem("0" * 64) == 404
    after = scrape(node)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("viewnode_tokens_issued_total", api="get") == 2
    assert grew("viewnode_tokens_redeemed_total") == 1
    assert grew("viewnode_tokens_refused_total", reason="used") == 1
    assert grew("viewnode_tokens_refused_total", reason="unknown") == 1
    assert grew("viewnode_viewer_sessions") == 1


def test_http_requests_are_timed_by_route_template_never_by_path(node: NodeProcess) -> None:
    study = uid(7700)
    for path in (f"/dicom-web/studies/{study}/series", f"/no/such/{study}"):
        request = urllib.request.Request(f"{node.http_url}{path}",
                                         headers={"Authorization": node.api_key})
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=30).close()
    text = metrics_text(node)
    assert study not in text
    samples = scrape(node)
    count = "viewnode_http_request_duration_seconds_count"
    assert total(samples, count, route="/dicom-web/studies/{study}/series", status="200") >= 1
    assert total(samples, count, route="unmatched", status="404") >= 1


def test_a_cli_import_beside_the_serving_node_is_counted_as_import(
        node: NodeProcess, tmp_path: Path) -> None:
    before = scrape(node)
    spec = StudySpec(study_uid=uid(7720), patient_id="METRICS-IMPORT", instances_per_series=3)
    for index in range(3):
        make_instance(spec, 0, index).save_as(tmp_path / f"{index}.dcm",
                                              enforce_file_format=True)
    result = node.cli("import", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    after = scrape(node)
    name = "viewnode_instances_received_total"
    assert total(after, name, door="import") - total(before, name, door="import") == 3


def test_a_replaced_worker_keeps_the_counts_of_the_one_it_replaces(node: NodeProcess) -> None:
    counted = total(scrape(node), "viewnode_instances_received_total")
    assert counted > 0
    victim = workers_of(node)[0]
    os.kill(victim, signal.SIGKILL)
    poll(lambda: victim not in workers_of(node), 30.0)
    assert total(scrape(node), "viewnode_instances_received_total") == counted
