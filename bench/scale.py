"""One instance vs two instances behind nginx, on one PostgreSQL database and one storage.

    .venv/bin/python -m bench.scale                       # 2,000 small instances, 2,000 tokens
    .venv/bin/python -m bench.scale --small 4000 --tokens 4000 --concurrency 32

Both set-ups run in the same run on the same machine, each on a fresh database (a private
PostgreSQL cluster, as the tests start it, but with fsync on: the durability a deployment has)
and a fresh storage folder:
- ingest: four storescu processes send the four parts of the set (one association each); with
  two instances two parts go to each, since DICOM senders address an instance, not the proxy;
- tokens: GET /ngv/obscurl through nginx (deploy/nginx.conf), `concurrency` requests at a time,
  each with its own sticky value, for a study in the index.
CPU seconds of the node processes, PostgreSQL and the clients (storescu, the HTTP client) during
each phase, and how busy the whole machine was, say where the time went.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.common import cpu_seconds, fresh_folder, print_table
from bench.dataset import store_set
from tests.peers import PEER_ENV, NodeProcess, free_port, wait_for_port
from tests.postgres_peer import PostgresCluster
from tests.test_rest_nginx import nginx_config

API_KEY = "bench-scale-key-0123456789abcdef"
ROLE = "physician"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def postgres_cpu(cluster: PostgresCluster) -> float:
    """CPU of the whole cluster so far: the postmaster, its live backends, and (through the
    postmaster's reaped-children times) every backend that has exited."""
    master = int((cluster.data / "postmaster.pid").read_text().split()[0])
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    fields = Path(f"/proc/{master}/stat").read_text().rsplit(")", 1)[1].split()
    reaped = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
    return cpu_seconds([master, *map(int, children)]) + reaped


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def client_cpu() -> float:
    """This process (the HTTP client) and its reaped children (storescu)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class Phase:
    seconds: float
    node_cpu: float
    postgres_cpu: float
    client_cpu: float
    # Share of the machine's CPU time in use during the phase (anything running, ours or not).
    machine_busy: float


class Setup:
    """`count` node processes on a fresh database and storage, behind nginx."""

    def __init__(self, cluster: PostgresCluster, count: int) -> None:
        self.cluster = cluster
        self.folder = fresh_folder(f"scale-{count}")
        self.database = f"scale_{count}"
        url = cluster.create_database(self.database)
        self.nodes = [NodeProcess(
            self.folder / f"node{i}", ae_title=f"SCALE{i}", api_key=API_KEY,
            extra={"database": {"url": url},
                   "storage": {"root": str(self.folder / "storage")}})
            for i in range(count)]
        self.nginx: subprocess.Popen[bytes] | None = None
        self.proxy = ""

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        added = self.nodes[0].cli("role", "add", ROLE, "--allow", "search,download")
        if added.returncode != 0:
            raise RuntimeError(added.stderr)
        port = free_port()
        conf = nginx_config(self.folder, port, [n.http_port for n in self.nodes])
        self.nginx = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(self.folder), "-g",
             f"daemon off; pid {self.folder / 'nginx.pid'}; "
             f"error_log {self.folder / 'error.log'};"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for_port(port, proc=self.nginx)
        self.proxy = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.terminate()
            self.nginx.wait(10)
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def indexed(self) -> int:
        with self.cluster.connect(self.database) as conn:
            row = conn.execute("SELECT count(*) FROM instances").fetchone()
        return int(str(row[0])) if row else 0

    def study_uid(self) -> str:
        with self.cluster.connect(self.database) as conn:
            row = conn.execute("SELECT study_uid FROM studies ORDER BY id LIMIT 1").fetchone()
        assert row is not None
        return str(row[0])

    @contextmanager
    def measured(self, into: list[Phase]) -> Iterator[None]:
        node_pids = [n.proc.pid for n in self.nodes if n.proc is not None]
        node0, pg0, client0 = cpu_seconds(node_pids), postgres_cpu(self.cluster), client_cpu()
        busy0, total0 = machine_busy()
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        busy1, total1 = machine_busy()
        into.append(Phase(seconds, cpu_seconds(node_pids) - node0,
                          postgres_cpu(self.cluster) - pg0, client_cpu() - client0,
                          (busy1 - busy0) / max(1, total1 - total0)))


async def issue_tokens(proxy: str, study_uid: str, total: int, concurrency: int) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    failures: list[str] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            async with session.get(f"{proxy}/ngv/obscurl", params={
                    "username": f"user{i % 50}", "role": ROLE, "studyUID": study_uid,
                    "sticky": f"desk-{i % 200}"}, headers={"Authorization": API_KEY}) as r:
                if r.status != 200:
                    failures.append(await r.text())
                await r.read()

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    if failures:
        raise RuntimeError(f"{len(failures)} token requests failed: {failures[0][:300]}")


def run(cluster: PostgresCluster, count: int, small: int, tokens: int,
        concurrency: int) -> tuple[Phase, Phase]:
    data = store_set("small", small)
    setup = Setup(cluster, count)
    setup.start()
    ingest: list[Phase] = []
    issuing: list[Phase] = []
    try:
        parts = list(data.parts)
        with setup.measured(ingest):
            # One storescu process per part, each to "its" instance, all at once.
            groups = [parts[i::count] for i in range(count)]
            asyncio.run(_send_all(setup, groups))
        if setup.indexed() != data.count:
            raise RuntimeError(f"{setup.indexed()} of {data.count} instances indexed")
        study = setup.study_uid()
        with setup.measured(issuing):
            asyncio.run(issue_tokens(setup.proxy, study, tokens, concurrency))
    finally:
        setup.stop()
    return ingest[0], issuing[0]


async def _send_all(setup: Setup, groups: list[list[Path]]) -> None:
    os.sync()  # the data set's dirty pages must not be flushed on this run's time
    senders = [await asyncio.create_subprocess_exec(
        "storescu", "-aec", node.ae_title, "+sd", "+r", "127.0.0.1", str(node.dicom_port),
        str(part), env=PEER_ENV, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
        for node, group in zip(setup.nodes, groups, strict=True) for part in group]
    for sender in senders:
        _, err = await sender.communicate()
        if sender.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode(errors='replace')[-300:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=2000, help="64x64 instances to ingest")
    parser.add_argument("--tokens", type=int, default=2000, help="tokens to issue")
    parser.add_argument("--concurrency", type=int, default=16, help="token requests at a time")
    args = parser.parse_args()
    cluster = PostgresCluster(fsync=True).start()
    rows = []
    try:
        for count in (1, 2):
            ingest, issuing = run(cluster, count, args.small, args.tokens, args.concurrency)
            name = f"{count} instance{'s' if count > 1 else ''}"
            for work, total, phase in (("ingest", args.small, ingest),
                                       ("tokens", args.tokens, issuing)):
                rows.append([name, work, total / phase.seconds, phase.seconds, phase.node_cpu,
                             phase.postgres_cpu, phase.client_cpu,
                             f"{100 * phase.machine_busy:.0f}%"])
    finally:
        cluster.stop()
    print(f"{os.cpu_count()} cores; {args.small} small instances over 4 associations; "
          f"{args.tokens} tokens, {args.concurrency} at a time, through nginx")
    print_table(["set-up", "work", "per second", "wall s", "node CPU s", "PostgreSQL CPU s",
                 "client CPU s", "machine busy"], rows)


if __name__ == "__main__":
    main()
