"""What every benchmark needs: the peers as fresh processes, DCMTK runs timed, a results table.

Every peer runs on 127.0.0.1 with free ports; DCMTK tools and Orthanc get TCP_NODELAY=1 (their
defaults leave Nagle's algorithm on). Each measured run gets a fresh peer with empty storage, so
that no run pays for (or profits from) what an earlier one left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.dataset import OUT
from tests.peers import (
    PEER_ENV,
    REPO,
    NodeProcess,
    OrthancProcess,
    StoreSCP,
    free_port,
    wait_for_port,
)

RUNS = OUT / "runs"


class Peer(Protocol):
    """A C-STORE destination the benchmarks can start, count and stop."""

    @property
    def name(self) -> str: ...
    @property
    def ae_title(self) -> str: ...
    @property
    def port(self) -> int: ...

    def start(self) -> None: ...
    def received(self) -> int: ...
    def stop(self) -> None: ...


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (those gone count nothing)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live children (a node's workers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        children = []
    return cpu_seconds([pid, *map(int, children)])


def fresh_folder(name: str) -> Path:
    folder = RUNS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@dataclass
class NodePeer:
    """`python -m node serve` with a fresh data folder and otherwise default settings."""

    folder: Path
    move_destinations: list[dict[str, Any]] = field(default_factory=list)
    name: str = "node"
    ae_title: str = "VIEWNODE"
    process: NodeProcess | None = None

    @property
    def port(self) -> int:
        assert self.process is not None
        return self.process.dicom_port

    def start(self) -> None:
        self.process = NodeProcess(
            self.folder, ae_title=self.ae_title, move_destinations=self.move_destinations
        ).start()
        wait_for_every_worker(self.process)

    def received(self) -> int:
        assert self.process is not None
        with sqlite3.connect(self.process.data_dir / "index.sqlite") as db:
            return int(db.execute("SELECT count(*) FROM instances").fetchone()[0])

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def wait_for_every_worker(node: NodeProcess, timeout: float = 30.0) -> None:
    """The port opens with the first worker ready; a run starts when all of them are."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = re.findall(r"node ready: [^\n]*?(?:worker \d+ of (\d+)|$)", node.log_text(),
                           re.M)
        if ready and len(ready) >= int(ready[0] or 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the node's workers were not all ready within {timeout:.0f} s")


@dataclass
class OrthancPeer:
    """Orthanc 1.10 with its default durability (SyncStorageArea left on)."""

    folder: Path
    modalities: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    name: str = "orthanc"
    ae_title: str = "ORTHANC"
    dicomweb: dict[str, Any] = field(default_factory=dict)
    process: OrthancProcess | None = None

    @property
    def port(self) -> int:
        assert self.process is not None
        return self.process.dicom_port

    def start(self) -> None:
        self.process = OrthancProcess(self.folder, modalities=self.modalities,
                                      dicomweb=self.dicomweb).start()

    def received(self) -> int:
        assert self.process is not None
        return int(self.process.get_json("/statistics")["CountInstances"])

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass
class StoreSCPPeer:
    """DCMTK storescp writing every received instance to a folder (no fsync)."""

    folder: Path
    name: str = "storescp"
    ae_title: str = "STORESCP"
    process: StoreSCP | None = None

    @property
    def port(self) -> int:
        assert self.process is not None
        return self.process.port

    def start(self) -> None:
        self.process = StoreSCP(self.folder / "received", ae_title=self.ae_title).start()

    def received(self) -> int:
        assert self.process is not None
        return len(self.process.received())

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass
class BarePeer:
    """bench/bare_scp.py: pynetdicom receiving to files and nothing else."""

    folder: Path
    name: str = "bare-pynetdicom"
    ae_title: str = "BARE"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.folder / "received"
        log = (self.folder / "bare.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_scp", "--port", str(self.port), "--out", str(out),
             "--ae-title", self.ae_title],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=PEER_ENV,
        )
        wait_for_port(self.port, proc=self.proc)

    def received(self) -> int:
        return sum(1 for p in (self.folder / "received").iterdir() if p.is_file())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def run_dcmtk(args: Sequence[str], timeout: float = 3600.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), env=PEER_ENV, capture_output=True, text=True,
                          timeout=timeout)


def storescu(peer: Peer, folders: Sequence[Path]) -> float:
    """Send each folder with its own storescu process (one association each), all at once;
    returns the wall time from the first start to the last exit."""
    os.sync()  # earlier runs' dirty pages must not be flushed on this run's time
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            ["storescu", "-aec", peer.ae_title, "+sd", "+r", "127.0.0.1", str(peer.port),
             str(folder)],
            env=PEER_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for folder in folders
    ]
    failures = []
    for proc in procs:
        _out, err = proc.communicate()
        if proc.returncode != 0:
            failures.append(err.strip()[-500:])
    elapsed = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"storescu to {peer.name} failed: {failures[0]}")
    return elapsed


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown table, so that results paste straight into bench/README.md."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in cells]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    print("\n".join(lines), flush=True)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if value < 10 else f"{value:.0f}"
    return str(value)
