"""C-MOVE: movescu moves one study from the node, and the same study from Orthanc, to DCMTK
storescp, in the same run.

    .venv/bin/python -m bench.move                    # 500 CT 512x512 instances, 3 moves each
    .venv/bin/python -m bench.move --instances 100 --kind small --repeat 5

Both peers are loaded with storescu first (not timed). Each timed move is movescu's wall time
until its final response; storescp's folder is emptied before every move and its count checked.
The CPU time the peer's process used during each move (from /proc) is printed per instance.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from pydicom import dcmread

from bench.common import (
    RUNS,
    NodePeer,
    OrthancPeer,
    Peer,
    StoreSCPPeer,
    fresh_folder,
    median,
    print_table,
    process_tree_cpu,
    run_dcmtk,
    storescu,
)
from bench.dataset import KINDS, single_study
from bench.find import peer_pid

MOVE_SCU = "MOVESCU"


def move(peer: Peer, study_uid: str, destination: StoreSCPPeer) -> tuple[float, float]:
    """movescu's wall time and the CPU time the peer's process spent meanwhile (seconds)."""
    assert destination.process is not None
    destination.process.clear()
    cpu = process_tree_cpu(peer_pid(peer))
    start = time.perf_counter()
    result = run_dcmtk([
        "movescu", "-S", "-aet", MOVE_SCU, "-aec", peer.ae_title, "-aem", destination.ae_title,
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
        "127.0.0.1", str(peer.port),
    ])
    elapsed = time.perf_counter() - start
    if result.returncode != 0 or "error" in result.stderr.lower():
        raise RuntimeError(f"movescu from {peer.name} failed: {result.stderr[-500:]}")
    return elapsed, process_tree_cpu(peer_pid(peer)) - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=500, help="instances in the study")
    parser.add_argument("--kind", choices=sorted(KINDS), default="ct",
                        help="ct: 512x512 16-bit; small: 64x64")
    parser.add_argument("--repeat", type=int, default=3, help="moves per peer (median kept)")
    args = parser.parse_args()
    data = single_study(args.kind, args.instances)
    study_uid = _study_uid(data.root)

    destination = StoreSCPPeer(fresh_folder("move-storescp"))
    destination.start()
    assert destination.process is not None
    dest = {"ae_title": destination.ae_title, "host": "127.0.0.1",
            "port": destination.process.port}
    peers: list[Peer] = [
        NodePeer(fresh_folder("move-node"), move_destinations=[dest]),
        OrthancPeer(fresh_folder("move-orthanc"), modalities={
            destination.ae_title: (destination.ae_title, "127.0.0.1", destination.process.port)
        }),
    ]
    times: dict[str, list[float]] = {p.name: [] for p in peers}
    cpu: dict[str, list[float]] = {p.name: [] for p in peers}
    try:
        for peer in peers:
            peer.start()
            storescu(peer, [data.root])
            if peer.received() != data.count:
                raise RuntimeError(f"{peer.name} holds {peer.received()} of {data.count}")
        for _ in range(args.repeat):
            for peer in peers:  # alternate, so that a busy moment hits both
                wall, used = move(peer, study_uid, destination)
                times[peer.name].append(wall)
                cpu[peer.name].append(used)
                if len(destination.process.received()) != data.count:
                    raise RuntimeError(
                        f"storescp got {len(destination.process.received())} of {data.count} "
                        f"from {peer.name}")
                print(f"{peer.name}: {data.count / times[peer.name][-1]:.0f} instances/s",
                      flush=True)
    finally:
        for peer in peers:
            peer.stop()
        destination.stop()
        for folder in ("move-node", "move-orthanc", "move-storescp"):
            shutil.rmtree(RUNS / folder, ignore_errors=True)
    mib = data.size_bytes / 2**20
    rates = {name: data.count / median(t) for name, t in times.items()}
    print()
    print(f"C-MOVE of one study, {data.count} x {args.kind} ({mib:.0f} MiB), to storescp; "
          f"median of {args.repeat}")
    print_table(
        ["peer", "median s", "instances/s", "MiB/s", "CPU ms per instance"],
        [[name, median(t), rates[name], mib / median(t), median(cpu[name]) * 1000 / data.count]
         for name, t in times.items()],
    )
    print(f"\nnode/orthanc: {rates['node'] / rates['orthanc']:.2f}")


def _study_uid(folder: Path) -> str:
    first = sorted(folder.glob("*.dcm"))[0]
    return str(dcmread(first, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
               .StudyInstanceUID)


if __name__ == "__main__":
    main()
