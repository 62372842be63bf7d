"""Token issuance under load: GET /ngv/obscurl?studyUID=... for studies already in the index,
against a bare aiohttp handler answering the same requests with a constant, same machine, same run.

    .venv/bin/python -m bench.tokens                      # 100,000 studies, 32 connections, 20 s
    .venv/bin/python -m bench.tokens --studies 10000 --seconds 5

The index (patients and studies, bulk-inserted with SQLAlchemy Core) is built once and cached
under bench/out/tokens/; each run copies it into a fresh `python -m node serve` with default
durability (SQLite WAL, synchronous=FULL). The load generator (bench/http_load.py) runs in its
own process. After the node's run every answered token must have its viewing context in the
database: a token is only answered once its context is durable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert

from bench.common import fresh_folder, print_table, process_tree_cpu
from bench.dataset import OUT
from node.index import database
from node.index.dicom_models import Patient, Study
from node.index.viewing_models import Role
from tests.peers import PEER_ENV, REPO, NodeProcess, free_port, wait_for_port

CACHE = OUT / "tokens"
STUDIES_PER_PATIENT = 4
ROLE = "physician"
# The target of the benchmark: a share of the bare handler's throughput, and a p99 bound.
TARGET_SHARE = 0.40
TARGET_P99_MS = 50.0


def study_uid(n: int) -> str:
    return f"1.2.826.0.1.3680043.10.1107.{n}"


def index_database(studies: int) -> Path:
    """An index holding `studies` studies (4 per patient) and the benchmark's role; cached."""
    path = CACHE / f"index-{studies}.sqlite"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    started = time.perf_counter()
    asyncio.run(_create_schema(partial))
    engine = create_engine(f"sqlite:///{partial}")
    now = datetime.now(UTC)
    patients = (studies + STUDIES_PER_PATIENT - 1) // STUDIES_PER_PATIENT
    with engine.begin() as conn:
        conn.execute(insert(Role), [{"name": ROLE, "permissions": ["search", "download"],
                                     "created_at": now}])
        conn.execute(insert(Patient), [
            {"id": p + 1, "patient_id": f"PID{p:07d}", "issuer": "",
             "name": f"BENCH^{p}", "name_search": f"BENCH^{p}"}
            for p in range(patients)])
        chunk = 20_000
        for first in range(0, studies, chunk):
            conn.execute(insert(Study), [
                {"id": n + 1, "patient_pk": n // STUDIES_PER_PATIENT + 1,
                 "study_uid": study_uid(n),
                 "study_date": f"20{n % 25:02d}{n % 12 + 1:02d}{n % 28 + 1:02d}",
                 "accession_number": f"ACC{n:08d}", "description": "BENCH STUDY",
                 "updated_at": now}
                for n in range(first, min(studies, first + chunk))])
    engine.dispose()
    partial.rename(path)
    print(f"index of {studies} studies built in {time.perf_counter() - started:.1f} s",
          flush=True)
    return path


async def _create_schema(path: Path) -> None:
    """The node's own schema (its migrations), so that `serve` takes the database as it is."""
    engine = database.create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await database.create_schema(engine)
    finally:
        await engine.dispose()


def request_paths(folder: Path, studies: int, count: int = 20_000) -> Path:
    """Issuance requests for random studies of the index, one a line."""
    rng = random.Random(1107)
    path = folder / "paths.txt"
    path.write_text("".join(
        f"/ngv/obscurl?username=bench{rng.randrange(50)}&role={ROLE}"
        f"&studyUID={study_uid(rng.randrange(studies))}\n" for _ in range(count)))
    return path


def load(base: str, paths: Path, seconds: float, connections: int, api_key: str,
         server_pid: int) -> dict[str, Any]:
    """The load generator's result, plus the server's CPU time per answered request."""
    cpu_before = process_tree_cpu(server_pid)
    out = subprocess.run(
        [sys.executable, "-m", "bench.http_load", "--base", base, "--paths", str(paths),
         "--seconds", str(seconds), "--connections", str(connections),
         "--header", f"Authorization: {api_key}"],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=seconds + 120)
    result: dict[str, Any] = json.loads(out.stdout)
    used = process_tree_cpu(server_pid) - cpu_before
    result["server_cpu_us"] = 1e6 * used / max(1, result["answered"])
    return result


def measure_bare(folder: Path, paths: Path, seconds: float, connections: int) -> dict[str, Any]:
    port = free_port()
    log = (folder / "bare.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "bench.bare_http", "--port", str(port)],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=PEER_ENV)
    try:
        wait_for_port(port, proc=proc)
        return load(f"http://127.0.0.1:{port}", paths, seconds, connections, "bench", proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def measure_node(folder: Path, index: Path, paths: Path, seconds: float,
                 connections: int, workers: int) -> dict[str, Any]:
    shutil.rmtree(folder / "node", ignore_errors=True)
    node = NodeProcess(folder / "node", extra={"storage": {"fsync": True},
                                               "node": {"workers": workers}})
    node.data_dir.mkdir(parents=True)
    shutil.copyfile(index, node.data_dir / "index.sqlite")
    node.start()
    assert node.proc is not None
    try:
        result = load(node.http_url, paths, seconds, connections, node.api_key, node.proc.pid)
    finally:
        node.stop()
    with sqlite3.connect(node.data_dir / "index.sqlite") as db:
        contexts = int(db.execute("SELECT count(*) FROM viewing_contexts").fetchone()[0])
        audits = int(db.execute(
            "SELECT count(*) FROM audit_events WHERE action = 'issue'").fetchone()[0])
    if contexts != result["answered"] or audits != result["answered"]:
        raise RuntimeError(f"{result['answered']} tokens answered, but {contexts} contexts and "
                           f"{audits} audit rows stored")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=100_000, help="studies in the index")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per server")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1,
                        help="bare, then node, this many times (on a busy machine: compare "
                             "the medians)")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (node.log)")
    parser.add_argument("--workers", type=int, default=0,
                        help="the node's [node] workers (default 0: one per CPU core)")
    args = parser.parse_args()
    index = index_database(args.studies)
    folder = fresh_folder("tokens")
    paths = request_paths(folder, args.studies)
    rows: list[list[object]] = []
    shares: list[float] = []
    p99s: list[float] = []
    for round_ in range(1, args.rounds + 1):
        bare = measure_bare(folder, paths, args.seconds, args.connections)
        print(f"bare aiohttp: {json.dumps(bare)}", flush=True)
        node = measure_node(folder, index, paths, args.seconds, args.connections,
                            args.workers)
        print(f"node obscurl: {json.dumps(node)}", flush=True)
        for name, result in (("bare aiohttp (constant)", bare), ("node GET /ngv/obscurl", node)):
            errors = sum(result["errors"].values())
            rows.append([round_, name, result["rps"], result["p50_ms"], result["p99_ms"],
                         result["server_cpu_us"], errors])
        shares.append(node["rps"] / bare["rps"])
        p99s.append(node["p99_ms"])
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    print()
    print_table(["round", "server", "requests/s", "p50 ms", "p99 ms", "server CPU us/req",
                 "errors"], rows)
    share, p99 = statistics.median(shares), statistics.median(p99s)
    met = share >= TARGET_SHARE and p99 < TARGET_P99_MS
    print(f"\n{args.studies} studies, {args.connections} connections, {args.seconds:.0f} s"
          f"{f' (median of {args.rounds} rounds)' if args.rounds > 1 else ''}: node at "
          f"{share:.0%} of the bare handler, p99 {p99:.1f} ms (target >= {TARGET_SHARE:.0%} "
          f"and < {TARGET_P99_MS:.0f} ms: {'met' if met else 'NOT met'})", flush=True)


if __name__ == "__main__":
    main()
