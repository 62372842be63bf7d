"""STOW-RS: the small data set in batches (one multipart/related request each), to the node's
/dicom-web and to Orthanc's DICOMweb plugin; beside them, for reference, storescu of the same
set to the node (C-STORE, one association).

    .venv/bin/python -m bench.dicomweb_stow                     # 2,000 small, batches of 50
    .venv/bin/python -m bench.dicomweb_stow --clients 4 --repeat 3

Each run gets a fresh peer with empty storage (`os.sync()` first, as bench.ingest). The
bodies are built before the clock starts; the time is from the first request to the last
answer, `--clients` keep-alive connections sending their share of the batches one after the
other. Every answer must be 200 and the peer must then hold every instance. With `--repeat N`
the peers take turns within each round and each peer's best run is kept.

Beside the rate, the CPU the peer's processes spent during the timed window (the node's
supervisor and workers, Orthanc's one process) per instance: less disturbed than the wall time
by other work on the machine. For each peer the lowest over the rounds is kept.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path
from typing import Any

import requests

from bench.common import (
    RUNS,
    NodePeer,
    OrthancPeer,
    fresh_folder,
    print_table,
    process_tree_cpu,
    storescu,
)
from bench.dataset import store_set

BOUNDARY = "bench-stow-0f3cf5c0"
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"'


def batches(files: list[Path], size: int) -> list[bytes]:
    """The request bodies: `size` files per body, as dicomweb-client writes them."""
    bodies = []
    for start in range(0, len(files), size):
        out = BytesIO()
        for path in files[start:start + size]:
            out.write(f"\r\n--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            out.write(path.read_bytes())
        out.write(f"\r\n--{BOUNDARY}--".encode())
        bodies.append(out.getvalue())
    return bodies


def send(url: str, headers: dict[str, str], bodies: list[bytes]) -> None:
    with requests.Session() as session:
        for body in bodies:
            response = session.post(url, data=body, headers=headers, timeout=600)
            if response.status_code != 200:
                raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")


def timed(url: str, headers: dict[str, str], bodies: list[bytes], clients: int) -> float:
    shares = [bodies[i::clients] for i in range(clients)]
    os.sync()  # earlier runs' dirty pages must not be flushed on this run's time
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(send, url, headers, share) for share in shares]:
            future.result()
    return time.perf_counter() - start


def measured(peer: NodePeer | OrthancPeer, count: int,
             send_all: Callable[[NodePeer | OrthancPeer], float]) -> tuple[float, float]:
    """Seconds `send_all` takes on the freshly started peer, which must then hold `count`, and
    the CPU seconds the peer's processes spent meanwhile. The peer's folder stays until the
    end of the benchmark (`main`), as in bench.ingest: on this machine's ext4 (no journal) a
    file created soon after thousands were deleted costs a scan over the recently freed
    inodes (the kernel's `recently_deleted`: a tenth of the node's CPU in a profile taken
    while other work deleted files), which made each peer pay for the one measured before."""
    peer.start()
    try:
        assert peer.process is not None and peer.process.proc is not None
        pid = peer.process.proc.pid
        cpu = process_tree_cpu(pid)
        seconds = send_all(peer)
        cpu = process_tree_cpu(pid) - cpu
        if peer.received() != count:
            raise RuntimeError(f"{peer.name}: {peer.received()} of {count} stored")
        return seconds, cpu
    finally:
        peer.stop()


def stow_to_node(bodies: list[bytes], clients: int) -> Callable[[NodePeer | OrthancPeer], float]:
    def send_all(peer: NodePeer | OrthancPeer) -> float:
        assert isinstance(peer, NodePeer) and peer.process is not None
        return timed(f"{peer.process.http_url}/dicom-web/studies",
                     {"Authorization": peer.process.api_key, "Content-Type": CONTENT_TYPE},
                     bodies, clients)
    return send_all


def stow_to_orthanc(bodies: list[bytes], clients: int
                    ) -> Callable[[NodePeer | OrthancPeer], float]:
    def send_all(peer: NodePeer | OrthancPeer) -> float:
        assert isinstance(peer, OrthancPeer) and peer.process is not None
        return timed(f"{peer.process.http_url}/dicom-web/studies",
                     {"Content-Type": CONTENT_TYPE}, bodies, clients)
    return send_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    data = store_set("small", args.instances)
    files = sorted(data.root.rglob("*.dcm"))
    bodies = batches(files, args.batch)
    best = {"node": float("inf"), "orthanc": float("inf"), "cstore": float("inf")}
    least_cpu = dict(best)
    try:
        for run in range(args.repeat):
            runs: dict[str, tuple[NodePeer | OrthancPeer, Callable[[Any], float]]] = {
                "node": (NodePeer(fresh_folder(f"stow-node-{run}")),
                         stow_to_node(bodies, args.clients)),
                "orthanc": (OrthancPeer(fresh_folder(f"stow-orthanc-{run}")),
                            stow_to_orthanc(bodies, args.clients)),
                "cstore": (NodePeer(fresh_folder(f"stow-cstore-{run}")),
                           lambda peer: storescu(peer, [data.root])),
            }
            for name, (peer, send_all) in runs.items():
                seconds, cpu = measured(peer, len(files), send_all)
                print(f"round {run + 1}: {name} {len(files) / seconds:.0f}/s, "
                      f"{1000 * cpu / len(files):.2f} ms CPU per instance", flush=True)
                best[name] = min(best[name], seconds)
                least_cpu[name] = min(least_cpu[name], cpu)
    finally:
        for folder in RUNS.glob("stow-*"):
            shutil.rmtree(folder, ignore_errors=True)
    rates = {name: len(files) / seconds for name, seconds in best.items()}
    cpu_ms = {name: 1000 * cpu / len(files) for name, cpu in least_cpu.items()}
    print_table(
        ["instances", "batch", "clients", "node STOW /s", "orthanc STOW /s", "node/orthanc",
         "node CPU ms/inst", "orthanc CPU ms/inst", "node C-STORE /s (1 assoc)"],
        [[len(files), args.batch, args.clients, rates["node"], rates["orthanc"],
          rates["node"] / rates["orthanc"], cpu_ms["node"], cpu_ms["orthanc"],
          rates["cstore"]]])


if __name__ == "__main__":
    main()
