"""C-FIND: 20 study-level findscu queries (by PatientID, StudyDate range, wildcard PatientName)
against the node and against Orthanc holding the same instances.

    .venv/bin/python -m bench.find                      # 100,000 instances (first run loads them)
    .venv/bin/python -m bench.find --instances 10000 --repeat 5

The data set (studies of 10 tiny instances, 5 studies per patient, dates over ten years) is
generated once under bench/out/data/, and both peers' loaded storage and index are kept under
bench/out/find/ so later runs start at once: the node is loaded with `python -m node import`,
Orthanc with four storescu associations. Each query's latency is findscu's wall time (process
start, association, query, all responses, release), the same for both peers; the match counts
of both must agree before anything is timed. Beside it, the CPU time the peer's process used
during the run (from /proc), which the machine's other work disturbs less.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    REPO,
    NodePeer,
    OrthancPeer,
    Peer,
    median,
    percentile,
    print_table,
    process_tree_cpu,
    run_dcmtk,
    storescu,
)
from bench.dataset import (
    INSTANCES_PER_QUERY_STUDY,
    OUT,
    STUDIES_PER_PATIENT,
    StoreSet,
    query_patient,
    query_set,
)
from tests.peers import PEER_ENV, NodeProcess

RETURN_KEYS = (
    "PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "StudyDate", "StudyTime",
    "AccessionNumber", "StudyID", "StudyDescription", "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
)


@dataclass(frozen=True)
class Query:
    label: str
    key: str
    value: str


def queries(instances: int) -> list[Query]:
    patients = max(1, instances // INSTANCES_PER_QUERY_STUDY // STUDIES_PER_PATIENT)
    by_id = [Query("PatientID", "PatientID", query_patient(patients * k // 7)[0])
             for k in range(7)]
    dates = [
        ("one day", "20180312"), ("one week", "20180301-20180307"),
        ("one month", "20190101-20190131"), ("one quarter", "20200101-20200331"),
        ("one year", "20210101-20211231"), ("since 2024-07", "20240701-"),
        ("until 2015-01", "-20150131"),
    ]
    by_date = [Query(f"StudyDate {label}", "StudyDate", value) for label, value in dates]
    names = ["SMITH^JAMES", "GARCIA^*", "MIL*", "*SON^M*", "W*", "*EZ^JO*"]
    by_name = [Query(f"PatientName {name}", "PatientName", name) for name in names]
    return by_id + by_date + by_name


def findscu_args(peer: Peer, query: Query) -> list[str]:
    args = ["findscu", "-S", "-aec", peer.ae_title, "-k", "QueryRetrieveLevel=STUDY",
            "-k", f"{query.key}={query.value}"]
    for key in RETURN_KEYS:
        if key != query.key:
            args += ["-k", key]
    return [*args, "127.0.0.1", str(peer.port)]


def count_matches(peer: Peer, query: Query) -> int:
    with tempfile.TemporaryDirectory() as folder:
        args = findscu_args(peer, query)
        result = run_dcmtk([*args[:-2], "-X", "-od", folder, *args[-2:]])
        if result.returncode != 0:
            raise RuntimeError(f"findscu to {peer.name} failed: {result.stderr[-500:]}")
        return sum(1 for _ in Path(folder).iterdir())


def time_query(peer: Peer, query: Query) -> tuple[float, float]:
    """findscu's wall time and the CPU time the peer's process spent meanwhile (seconds): the
    CPU is the steadier measure on a machine shared with other work."""
    args = findscu_args(peer, query)
    cpu = process_tree_cpu(peer_pid(peer))
    start = time.perf_counter()
    result = subprocess.run(args, env=PEER_ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"findscu to {peer.name} failed: {result.stderr[-500:]}")
    return elapsed, process_tree_cpu(peer_pid(peer)) - cpu


def peer_pid(peer: Peer) -> int:
    process = getattr(peer, "process", None)
    proc = getattr(process, "proc", None)
    if proc is None:
        raise RuntimeError(f"{peer.name} is not running")
    return int(proc.pid)


def load_node(data: StoreSet, folder: Path) -> NodePeer:
    peer = NodePeer(folder)
    if not (folder / "loaded").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        config = NodeProcess(folder)
        config.write_config()
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "node", "import", str(data.root), "--jobs", "16",
             "--config", str(config.config_path)],
            cwd=REPO, env=PEER_ENV, capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"node import failed: {result.stderr[-1000:]}")
        print(f"node: imported {data.count} instances in {time.perf_counter() - started:.0f} s",
              flush=True)
        (folder / "loaded").write_text(str(data.count))
    return peer


def load_orthanc(data: StoreSet, folder: Path) -> OrthancPeer:
    peer = OrthancPeer(folder)
    if not (folder / "loaded").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        peer.start()
        try:
            seconds = storescu(peer, list(data.parts))
            if peer.received() != data.count:
                raise RuntimeError(f"Orthanc holds {peer.received()} of {data.count}")
        finally:
            peer.stop()
        print(f"orthanc: stored {data.count} instances in {seconds:.0f} s", flush=True)
        (folder / "loaded").write_text(str(data.count))
    return peer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each query")
    args = parser.parse_args()
    data = query_set(args.instances)
    folder = OUT / "find"
    peers: list[Peer] = [
        load_node(data, folder / f"node-{data.count}"),
        load_orthanc(data, folder / f"orthanc-{data.count}"),
    ]
    latencies: dict[str, list[float]] = {p.name: [] for p in peers}
    rows = []
    try:
        for peer in peers:
            peer.start()
            if peer.received() != data.count:
                raise RuntimeError(f"{peer.name} holds {peer.received()} of {data.count}")
        for query in queries(data.count):
            counts = {p.name: count_matches(p, query) for p in peers}
            if len(set(counts.values())) != 1:
                raise RuntimeError(f"{query.label}: match counts differ: {counts}")
            per_peer: dict[str, list[float]] = {p.name: [] for p in peers}
            cpu: dict[str, list[float]] = {p.name: [] for p in peers}
            for _ in range(args.repeat):
                for peer in peers:  # alternate, so that a busy moment hits both
                    wall, used = time_query(peer, query)
                    per_peer[peer.name].append(wall)
                    cpu[peer.name].append(used)
            for name, values in per_peer.items():
                latencies[name] += values
            rows.append([query.label, counts["node"],
                         *(median(per_peer[p.name]) * 1000 for p in peers),
                         # /proc counts 10 ms ticks: the mean over the runs, not a median
                         *(sum(cpu[p.name]) / len(cpu[p.name]) * 1000 for p in peers)])
    finally:
        for peer in peers:
            peer.stop()
    print(f"\n{data.count} instances, {data.count // INSTANCES_PER_QUERY_STUDY} studies; "
          f"milliseconds per findscu run, median of {args.repeat}")
    print_table(["query", "matches", *(f"{p.name} ms" for p in peers),
                 *(f"{p.name} CPU ms (mean)" for p in peers)], rows)
    print()
    print_table(
        ["peer", "median ms", "p90 ms"],
        [[name, median(v) * 1000, percentile(v, 0.9) * 1000] for name, v in latencies.items()],
    )
    print(f"\nnode/orthanc median latency: "
          f"{median(latencies['node']) / median(latencies['orthanc']):.2f}")


if __name__ == "__main__":
    main()
