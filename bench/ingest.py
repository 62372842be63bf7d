"""C-STORE ingest: storescu sends the same data set to the node, Orthanc, DCMTK storescp and a
bare pynetdicom SCP, over one association and over four concurrent ones.

    .venv/bin/python -m bench.ingest                      # 5,000 small + 2,000 CT (a few minutes)
    .venv/bin/python -m bench.ingest --small 1000 --ct 300
    .venv/bin/python -m bench.ingest --peers node,bare-pynetdicom --assocs 1
    .venv/bin/python -m bench.ingest --peers node,node-at-quota --small 2000 --ct 0

`node-at-quota` is the node with `[storage] max_bytes` set to the size of a filler set of
other studies, sent first (not timed): every instance of the timed run then makes room by
recycling the least recently used studies. Its received count is read from GET /metrics.

Every run starts a fresh peer with empty storage; the time is storescu's wall time (from the
start of the first process to the exit of the last), and the received count is checked.
"""

from __future__ import annotations

import argparse
import shutil
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.common import (
    RUNS,
    BarePeer,
    NodePeer,
    OrthancPeer,
    Peer,
    StoreSCPPeer,
    fresh_folder,
    print_table,
    storescu,
    wait_for_every_worker,
)
from bench.dataset import StoreSet, store_set
from tests.peers import NodeProcess


@dataclass
class QuotaNodePeer(NodePeer):
    """The node filled to its storage quota before the run (see the module docstring)."""

    filler: StoreSet | None = None
    name: str = "node-at-quota"
    # Instances the node had received when the timed run started (the filler's).
    _before: int = 0

    def start(self) -> None:
        assert self.filler is not None
        self.process = NodeProcess(self.folder, ae_title=self.ae_title, extra={
            "storage": {"max_bytes": self.filler.size_bytes}}).start()
        wait_for_every_worker(self.process)
        storescu(self, list(self.filler.parts))
        self._before = self._received_total()

    def received(self) -> int:
        return self._received_total() - self._before

    def _received_total(self) -> int:
        assert self.process is not None
        request = urllib.request.Request(f"{self.process.http_url}/metrics",
                                         headers={"Authorization": self.process.api_key})
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
        return int(sum(sample.value for family in text_string_to_metric_families(text)
                       for sample in family.samples
                       if sample.name == "viewnode_instances_received_total"))


PEERS: dict[str, Callable[[Path, StoreSet], Peer]] = {
    "storescp": lambda folder, data: StoreSCPPeer(folder),
    "orthanc": lambda folder, data: OrthancPeer(folder),
    "bare-pynetdicom": lambda folder, data: BarePeer(folder),
    "node": lambda folder, data: NodePeer(folder),
    "node-at-quota": lambda folder, data: QuotaNodePeer(
        folder, filler=store_set(data.kind, data.count, filler=True)),
}


def measure(name: str, data: StoreSet, assocs: int, run: int) -> float:
    """Instances per second for one peer, one data set, 1 or 4 associations.

    Each run gets a folder of its own, all deleted only at the end: on this machine's ext4
    (no journal) a file created within a minute or so of thousands being deleted costs a scan
    over the recently freed inodes, which made every peer pay for the one measured before it.
    """
    folder = fresh_folder(f"ingest-{name}-{data.kind}-{assocs}-{run}")
    peer = PEERS[name](folder, data)
    peer.start()
    try:
        folders = [data.root] if assocs == 1 else list(data.parts)
        seconds = storescu(peer, folders)
        received = peer.received()
    finally:
        peer.stop()
    if received != data.count:
        raise RuntimeError(f"{name} holds {received} of {data.count} instances sent")
    return data.count / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=5000, help="64x64 instances (0: skip)")
    parser.add_argument("--ct", type=int, default=2000, help="512x512 CT instances (0: skip)")
    parser.add_argument("--assocs", default="1,4", help="association counts to run: 1, 4 or 1,4")
    parser.add_argument("--peers", default=",".join(PEERS), help="peers to run, comma-separated")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the best is kept")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="seconds to wait before each run, so that no peer pays for files "
                             "deleted just before it (35 on ext4 without a journal)")
    args = parser.parse_args()
    names = [n for n in args.peers.split(",") if n]
    unknown = set(names) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers: {', '.join(sorted(unknown))}")
    assoc_counts = [int(a) for a in args.assocs.split(",")]
    sets = [store_set(kind, n) for kind, n in (("small", args.small), ("ct", args.ct)) if n > 0]
    rows = []
    try:
        rows = measure_all(sets, names, assoc_counts, args.repeat, args.settle)
    finally:
        for folder in RUNS.glob("ingest-*"):
            shutil.rmtree(folder, ignore_errors=True)
    print()
    print_table(["data set", "assocs", *[f"{n} /s" for n in names], "node/orthanc",
                 "node/bare", "at quota/node"], rows)


def measure_all(sets: list[StoreSet], names: list[str], assoc_counts: list[int],
                repeat: int, settle: float = 0.0) -> list[list[object]]:
    rows = []
    for data in sets:
        mib = data.size_bytes / data.count / 2**20
        for assocs in assoc_counts:
            # The peers take turns within each repeat, so that a slow moment of the machine
            # (cells move by up to 1.5x between runs minutes apart) is shared between them.
            runs: dict[str, list[float]] = {name: [] for name in names}
            for run in range(repeat):
                for name in names:
                    # On ext4 without a journal a file created within 30 s of others being
                    # deleted scans past their inodes: the node at its quota deletes the files
                    # it recycled once its run ends, the runs before it deleted theirs.
                    time.sleep(settle)
                    runs[name].append(measure(name, data, assocs, run))
                    print(f"{data.kind} x{data.count} ({mib:.2f} MiB each), {assocs} assoc: "
                          f"{name} {runs[name][-1]:.0f}/s", flush=True)
            rates = {name: max(values) for name, values in runs.items()}
            row: list[object] = [f"{data.kind} x{data.count}", assocs]
            row += [rates[n] for n in names]
            node = rates.get("node")
            row.append(node / rates["orthanc"] if node and "orthanc" in rates else "-")
            row.append(node / rates["bare-pynetdicom"]
                       if node and "bare-pynetdicom" in rates else "-")
            row.append(rates["node-at-quota"] / node
                       if node and "node-at-quota" in rates else "-")
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()
