"""DICOMweb side by side with Orthanc's DICOMweb plugin, on the same data, in one run.

    .venv/bin/python -m bench.dicomweb                        # everything, full sizes
    .venv/bin/python -m bench.dicomweb --parts metadata --series 2000
    .venv/bin/python -m bench.dicomweb --parts qido --query-instances 10000

- metadata: `/studies/{s}/series/{se}/metadata` of one series of `--series` small instances.
  The node's first answer (its metadata file made from the headers) and its later ones (the
  file read back), against Orthanc with `"SeriesMetadata": "Full"` and `"MainDicomTags"`, each
  peer's median of `--repeat`.
- qido: `/studies?PatientID=` and `/studies?StudyDate=range` on the C-FIND benchmark's data
  (bench/find.py, loaded once and kept under bench/out/find/), the match counts of both peers
  checked equal first; median latency per peer.
- frames: every frame of a `--ct`-slice CT series (512x512, 16 bits) through 4 connections,
  `transfer-syntax=*` as OHIF asks; frames per second.

Requests are made with one HTTP client for both peers; the node gets the API key, Orthanc none.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from pydicom import dcmread

from bench.common import NodePeer, OrthancPeer, print_table, storescu
from bench.dataset import INSTANCES_PER_QUERY_STUDY, OUT, query_set, single_study
from bench.find import load_node, load_orthanc, queries
from tests.peers import PEER_ENV, REPO, NodeProcess

FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
CONNECTIONS = 4


class Client:
    """HTTP to one peer's DICOMweb root."""

    def __init__(self, name: str, root: str, headers: dict[str, str]) -> None:
        self.name = name
        self.root = root
        self.headers = headers
        self.http = requests.Session()

    def get(self, path: str, accept: str = "application/dicom+json",
            params: dict[str, str] | None = None,
            http: requests.Session | None = None) -> requests.Response:
        response = (http or self.http).get(f"{self.root}{path}", params=params, timeout=600,
                                           headers={**self.headers, "Accept": accept})
        if response.status_code not in (200, 204):
            raise RuntimeError(f"{self.name} {path}: {response.status_code} "
                               f"{response.text[:300]}")
        return response


def timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def node_client(node: NodePeer) -> Client:
    assert node.process is not None
    return Client("node", f"{node.process.http_url}/dicom-web",
                  {"Authorization": node.process.api_key})


def orthanc_client(orthanc: OrthancPeer) -> Client:
    assert orthanc.process is not None
    return Client(orthanc.name, f"{orthanc.process.http_url}/dicom-web", {})


def import_into_node(folder: Path, data_root: Path) -> NodePeer:
    peer = NodePeer(folder)
    config = NodeProcess(folder)
    config.write_config()
    result = subprocess.run(
        [sys.executable, "-m", "node", "import", str(data_root), "--jobs", "8",
         "--config", str(config.config_path)],
        cwd=REPO, env=PEER_ENV, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"node import failed: {result.stderr[-1000:]}")
    return peer


def matches(response: requests.Response) -> int:
    return len(response.json()) if response.content else 0


def first_study_uid(root: Path) -> str:
    return str(dcmread(next(root.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)


def series_path(client: Client, study_uid: str) -> str:
    series = client.get(f"/studies/{study_uid}/series").json()
    return f"/studies/{study_uid}/series/{series[0]['0020000E']['Value'][0]}"


def bench_metadata(count: int, repeat: int) -> list[list[object]]:
    data = single_study("small", count)
    study_uid = first_study_uid(data.root)
    folder = OUT / "dicomweb" / f"metadata-{count}"
    shutil.rmtree(folder, ignore_errors=True)
    node = import_into_node(folder / "node", data.root)
    rows: list[list[object]] = []
    node.start()
    try:
        client = node_client(node)
        path = series_path(client, study_uid) + "/metadata"
        first = timed(lambda: client.get(path))
        warm = [timed(lambda: client.get(path)) for _ in range(repeat)]
        instances = len(client.get(path).json())
        rows.append(["node, first answer", instances, first * 1000])
        rows.append(["node, later answers", instances, statistics.median(warm) * 1000])
    finally:
        node.stop()
    for mode in ("Full", "MainDicomTags"):
        orthanc = OrthancPeer(folder / f"orthanc-{mode}", dicomweb={"SeriesMetadata": mode})
        orthanc.start()
        try:
            storescu(orthanc, [data.root])
            client = orthanc_client(orthanc)
            path = series_path(client, study_uid) + "/metadata"
            times = [timed(lambda client=client, path=path: client.get(path))
                     for _ in range(repeat)]
            rows.append([f"orthanc {mode}", len(client.get(path).json()),
                         statistics.median(times) * 1000])
        finally:
            orthanc.stop()
    return rows


def bench_qido(instances: int, repeat: int) -> list[list[object]]:
    data = query_set(instances)
    folder = OUT / "find"
    node = load_node(data, folder / f"node-{data.count}")
    orthanc = load_orthanc(data, folder / f"orthanc-{data.count}")
    rows: list[list[object]] = []
    node.start()
    orthanc.start()
    try:
        clients = [node_client(node), orthanc_client(orthanc)]
        for query in queries(data.count):
            if query.key == "PatientName":
                continue  # name matching differs between the peers' QIDO (case, fuzzy)
            params = {query.key: query.value, "limit": "100000"}
            counts = {c.name: matches(c.get("/studies", params=params)) for c in clients}
            if len(set(counts.values())) != 1:
                raise RuntimeError(f"{query.label}: match counts differ: {counts}")
            times: dict[str, list[float]] = {c.name: [] for c in clients}
            for _ in range(repeat):
                for c in clients:  # alternate, so that a busy moment hits both
                    times[c.name].append(timed(
                        lambda c=c, params=params: c.get("/studies", params=params)))
            rows.append([query.label, counts["node"],
                         *(statistics.median(times[c.name]) * 1000 for c in clients)])
    finally:
        node.stop()
        orthanc.stop()
    return rows


def bench_frames(slices: int) -> list[list[object]]:
    data = single_study("ct", slices)
    study_uid = first_study_uid(data.root)
    folder = OUT / "dicomweb" / f"frames-{slices}"
    shutil.rmtree(folder, ignore_errors=True)
    node = import_into_node(folder / "node", data.root)
    orthanc = OrthancPeer(folder / "orthanc")
    rows: list[list[object]] = []
    node.start()
    orthanc.start()
    try:
        storescu(orthanc, [data.root])
        for client in (node_client(node), orthanc_client(orthanc)):
            series = series_path(client, study_uid)
            sops = [i["00080018"]["Value"][0]
                    for i in client.get(f"{series}/instances").json()]
            sessions = [requests.Session() for _ in range(CONNECTIONS)]

            def fetch(k: int, client: Client = client, series: str = series,
                      sops: list[str] = sops, sessions: list[requests.Session] = sessions
                      ) -> int:
                http = sessions[k % CONNECTIONS]
                return len(client.get(f"{series}/instances/{sops[k]}/frames/1", FRAME_ACCEPT,
                                      http=http).content)

            with ThreadPoolExecutor(CONNECTIONS) as pool:
                list(pool.map(fetch, range(min(8, len(sops)))))  # connections opened
                start = time.perf_counter()
                sizes = list(pool.map(fetch, range(len(sops))))
                elapsed = time.perf_counter() - start
            rows.append([client.name, len(sops), sum(sizes) // 2**20, len(sops) / elapsed])
    finally:
        node.stop()
        orthanc.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="metadata,qido,frames")
    parser.add_argument("--series", type=int, default=2000, help="instances in the series")
    parser.add_argument("--query-instances", type=int, default=100_000)
    parser.add_argument("--ct", type=int, default=500, help="CT slices for the frames run")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if "metadata" in parts:
        rows = bench_metadata(args.series, args.repeat)
        print(f"\n/metadata of one series of {args.series} small instances (ms, median of "
              f"{args.repeat})")
        print_table(["peer", "instances", "ms"], rows)
        best = min(r[2] for r in rows if str(r[0]).startswith("orthanc"))
        print(f"orthanc best / node later answers: {best / rows[1][2]:.1f}x "
              f"(first answer: {best / rows[0][2]:.2f}x)")
    if "qido" in parts:
        rows = bench_qido(args.query_instances, args.repeat)
        print(f"\nQIDO /studies on {args.query_instances} instances "
              f"({args.query_instances // INSTANCES_PER_QUERY_STUDY} studies), ms, median of "
              f"{args.repeat}")
        print_table(["query", "matches", "node ms", "orthanc ms"], rows)
        node_median = statistics.median(r[2] for r in rows)
        orthanc_median = statistics.median(r[3] for r in rows)
        print(f"node/orthanc median latency: {node_median / orthanc_median:.2f}")
    if "frames" in parts:
        rows = bench_frames(args.ct)
        print(f"\nframes of a {args.ct}-slice CT over {CONNECTIONS} connections")
        print_table(["peer", "frames", "MiB", "frames/s"], rows)
        print(f"node/orthanc frames/s: {rows[0][3] / rows[1][3]:.2f}")


if __name__ == "__main__":
    main()
