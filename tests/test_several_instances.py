"""Two node processes on one PostgreSQL database and one storage folder, behind deploy/nginx.conf:
the deployment the README's deployment section describes.

Always on PostgreSQL (the session's private cluster), whichever backend the rest of the suite
runs on, so it runs in the SQLite pass only.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydicom import dcmread

from node.ingest.file_completeness import check_complete
from tests import index_db
from tests.factory import StudySpec, uid, write_study
from tests.peers import (
    PEER_ENV,
    NodeProcess,
    OrthancProcess,
    dcmtk,
    free_port,
    incoming_files,
    wait_for_port,
)
from tests.postgres_peer import PostgresCluster
from tests.test_rest_nginx import nginx_config

pytestmark = pytest.mark.skipif(index_db.on_postgresql(),
                                reason="runs on PostgreSQL in the SQLite pass already")

API_KEY = "several-instances-key-0123456789"
ROLE = "physician"
DATABASE = "several_instances"
BURST = 500


class Deployment:
    def __init__(self, folder: Path, cluster: PostgresCluster, orthanc: OrthancProcess,
                 nodes: list[NodeProcess], proxy: str) -> None:
        self.folder = folder
        self.cluster = cluster
        self.orthanc = orthanc
        self.nodes = nodes
        self.proxy = proxy

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with self.cluster.connect(DATABASE) as conn:
            return list(conn.execute(query, params).fetchall())

    def storage(self) -> Path:
        return self.folder / "storage"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory,
               postgres: PostgresCluster) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("several")
    url = postgres.create_database(DATABASE)
    ports = {"NODEA": free_port(), "NODEB": free_port()}
    orthanc = OrthancProcess(folder / "orthanc", ae_title="PACS", modalities={
        ae: (ae, "127.0.0.1", port) for ae, port in ports.items()}).start()
    nodes = [NodeProcess(
        folder / ae.lower(), ae_title=ae, dicom_port=port, api_key=API_KEY,
        source_nodes=[{"ae_title": "PACS", "host": "127.0.0.1", "port": orthanc.dicom_port}],
        extra={
            "database": {"url": url},
            "storage": {"root": str(folder / "storage"), "fsync": False},
            "jobs": {"heartbeat_seconds": 0.5, "stale_seconds": 3.0, "poll_seconds": 0.2},
        }) for ae, port in ports.items()]
    nginx: subprocess.Popen[bytes] | None = None
    try:
        for node in nodes:
            node.start()
        added = nodes[0].cli("role", "add", ROLE, "--allow", "search,download")
        assert added.returncode == 0, added.stderr
        port = free_port()
        conf = nginx_config(folder, port, [n.http_port for n in nodes])
        nginx = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(folder),
             "-g", f"daemon off; pid {folder / 'nginx.pid'}; error_log {folder / 'error.log'};"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for_port(port, proc=nginx)
        yield Deployment(folder, postgres, orthanc, nodes, f"http://127.0.0.1:{port}")
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        for node in nodes:
            node.stop()
        orthanc.stop()


async def issue(session: aiohttp.ClientSession, base: str, params: dict[str, str]
                ) -> tuple[str, str]:
    """A token from `base` (an instance or the proxy); (token, the instance that issued it)."""
    async with session.get(f"{base}/ngv/obscurl", params={
            "username": "janedoe", "role": ROLE, **params},
            headers={"Authorization": API_KEY}) as response:
        assert response.status == 200, await response.text()
        return await response.text(), response.headers["X-Node-Instance"]


async def test_the_same_sticky_value_always_reaches_the_same_instance(
        deployment: Deployment) -> None:
    seen: dict[str, set[str]] = {}
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            for i in range(12):
                _, name = await issue(session, deployment.proxy,
                                      {"studyUID": uid(9601), "sticky": f"desk-{i}"})
                seen.setdefault(f"desk-{i}", set()).add(name)
    assert all(len(names) == 1 for names in seen.values())
    assert len(set().union(*seen.values())) == 2


async def test_a_token_issued_by_one_instance_is_redeemed_by_the_other(
        deployment: Deployment) -> None:
    first, second = (n.http_url for n in deployment.nodes)
    async with aiohttp.ClientSession() as session:
        token, _ = await issue(session, first, {"studyUID": uid(9602)})
        async with session.get(f"{second}/ngv", params={"q": token},
                               allow_redirects=False) as redeemed:
            assert redeemed.status == 302
            assert "ngv_session" in redeemed.cookies
        session.cookie_jar.clear()
        async with session.get(f"{first}/ngv", params={"q": token},
                               allow_redirects=False) as again:
            assert again.status == 403


async def test_a_token_sent_to_both_instances_at_once_is_redeemed_once(
        deployment: Deployment) -> None:
    bases = [n.http_url for n in deployment.nodes]
    for round_ in range(5):
        async with aiohttp.ClientSession() as issuer:
            token, _ = await issue(issuer, bases[round_ % 2], {"studyUID": uid(9603)})

        statuses = await asyncio.gather(*(redeem(bases[i % 2], token) for i in range(8)))
        assert sorted(statuses) == [302] + [403] * 7, round_


async def redeem(base: str, token: str) -> int:
    """Open /ngv?q=TOKEN as a fresh browser would; the status."""
    async with aiohttp.ClientSession() as browser, browser.get(
            f"{base}/ngv", params={"q": token}, allow_redirects=False) as response:
        return response.status


def test_a_c_store_to_one_instance_is_found_by_c_find_on_the_other(
        deployment: Deployment, tmp_path: Path) -> None:
    first, second = deployment.nodes
    spec = StudySpec(study_uid=uid(9604), patient_id="SEVERAL-FIND", series=2,
                     instances_per_series=3, rows=16, columns=16)
    write_study(tmp_path / "study", spec)
    sent = dcmtk("storescu", "-aec", first.ae_title, "+sd", "+r", "127.0.0.1",
                 str(first.dicom_port), str(tmp_path / "study"))
    assert sent.returncode == 0, sent.stderr
    found = dcmtk("findscu", "-S", "-aec", second.ae_title, "-k", "QueryRetrieveLevel=STUDY",
                  "-k", f"StudyInstanceUID={spec.study_uid}", "-k", "PatientID",
                  "-k", "NumberOfStudyRelatedInstances", "-X", "-od", str(tmp_path),
                  "127.0.0.1", str(second.dicom_port))
    assert found.returncode == 0, found.stderr
    responses = [dcmread(p) for p in tmp_path.glob("rsp*.dcm")]
    assert [(r.PatientID, int(r.NumberOfStudyRelatedInstances)) for r in responses] == [
        ("SEVERAL-FIND", 6)]


def test_the_same_instances_sent_to_both_at_once_are_stored_and_indexed_once(
        deployment: Deployment, tmp_path: Path) -> None:
    spec = StudySpec(study_uid=uid(9605), patient_id="SEVERAL-BURST", series=5,
                     instances_per_series=BURST // 5, rows=16, columns=16)
    files = write_study(tmp_path / "study", spec)
    senders = [subprocess.Popen(
        ["storescu", "-aec", node.ae_title, "+sd", "+r", "127.0.0.1", str(node.dicom_port),
         str(tmp_path / "study")], env=PEER_ENV, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True) for node in deployment.nodes]
    outputs = [sender.communicate(timeout=300)[0] for sender in senders]
    assert [s.returncode for s in senders] == [0, 0], outputs
    rows = deployment.sql(
        "SELECT i.sop_uid, i.path FROM instances i JOIN series s ON i.series_pk = s.id "
        "JOIN studies t ON s.study_pk = t.id WHERE t.study_uid = %s", spec.study_uid)
    assert sorted(sop for sop, _ in rows) == sorted(p.stem for p in files)
    assert deployment.sql("SELECT count(*) FROM patients WHERE patient_id = %s",
                          spec.patient_id) == [(1,)]
    assert deployment.sql("SELECT count(*) FROM studies WHERE study_uid = %s",
                          spec.study_uid) == [(1,)]
    assert deployment.sql(
        "SELECT count(*) FROM series s JOIN studies t ON s.study_pk = t.id "
        "WHERE t.study_uid = %s", spec.study_uid) == [(5,)]
    stored = sorted((deployment.storage() / rows[0][1]).parent.iterdir())
    assert [p.name for p in stored] == sorted(f"{p.stem}.dcm" for p in files)
    for path in stored:
        check_complete(path)
    for node in deployment.nodes:
        assert incoming_files(node.data_dir) == []


def test_a_retrieval_whose_instance_is_killed_is_finished_by_the_other(
        deployment: Deployment, tmp_path: Path) -> None:
    spec = StudySpec(study_uid=uid(9606), patient_id="SEVERAL-MOVE", series=4,
                     instances_per_series=60, rows=64, columns=64)
    for path in write_study(tmp_path / "study", spec):
        deployment.orthanc.upload(path)
    token, issuer = asyncio.run(_issue_once(deployment.proxy, spec.study_uid))
    assert len(token) == 64
    deadline = time.monotonic() + 30
    claimed = ""
    while not claimed:
        assert time.monotonic() < deadline, "nobody claimed the retrieval"
        found = deployment.sql("SELECT state, claimed_by FROM jobs WHERE kind = 'retrieve' "
                               "AND key = %s", spec.study_uid)
        if found and found[0][0] == "running":
            claimed = found[0][1]
        time.sleep(0.02)
    by_port = {str(n.http_port): n for n in deployment.nodes}
    victim = by_port[claimed.split("/")[0].rsplit(":", 1)[1]]
    survivor = next(n for n in deployment.nodes if n is not victim)
    victim.kill()
    deadline = time.monotonic() + 60
    while True:
        state, claimed_by, attempts = deployment.sql(
            "SELECT state, claimed_by, attempts FROM jobs WHERE kind = 'retrieve' AND key = %s",
            spec.study_uid)[0]
        if state in ("done", "failed"):
            break
        assert time.monotonic() < deadline, (state, claimed_by)
        time.sleep(0.1)
    assert (state, attempts) == ("done", 2)
    assert claimed_by.split("/")[0].endswith(f":{survivor.http_port}")
    indexed = deployment.sql(
        "SELECT count(*) FROM instances i JOIN series s ON i.series_pk = s.id "
        "JOIN studies t ON s.study_pk = t.id WHERE t.study_uid = %s", spec.study_uid)
    assert indexed == [(240,)]
    assert set(deployment.sql("SELECT state FROM context_studies WHERE study_uid = %s",
                              spec.study_uid)) == {("available",)}
    assert issuer


async def _issue_once(proxy: str, study_uid: str) -> tuple[str, str]:
    async with aiohttp.ClientSession() as session:
        return await issue(session, proxy, {"studyUID": study_uid, "sticky": "retrieval"})
