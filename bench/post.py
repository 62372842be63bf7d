"""POST /ngv/v1/obscurl: a folder of DICOM files and an S3 bucket (moto on loopback), beside
storescu of the same folder to the node.

    .venv/bin/python -m bench.post                    # 2,000-file folder, 500-object bucket
    .venv/bin/python -m bench.post --files 500 --objects 100

Each run starts a fresh node (`python -m node serve`). Times: until the token is returned, and
until every instance is in the index (polled every 20 ms).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import NodePeer, fresh_folder, print_table, storescu
from bench.dataset import store_set
from tests.cloud_peers import BIN, ServerProcess, s3_put
from tests.factory import StudySpec, make_instance, uid
from tests.peers import NodeProcess

ROLE = "diagnostic"
BUCKET = "bench-bucket"


def start_node(folder: Path, **extra: dict[str, Any]) -> NodeProcess:
    node = NodeProcess(folder, extra=dict(extra)).start()
    result = node.cli("role", "add", ROLE)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return node


def indexed(node: NodeProcess) -> int:
    with sqlite3.connect(node.data_dir / "index.sqlite") as db:
        return int(db.execute("SELECT count(*) FROM instances").fetchone()[0])


def post(node: NodeProcess, body: dict[str, Any]) -> str:
    request = urllib.request.Request(
        f"{node.http_url}/ngv/v1/obscurl", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": node.api_key, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return str(response.read().decode())


def timed_open(node: NodeProcess, body: dict[str, Any], count: int) -> tuple[float, float]:
    """Seconds until the token, and until `count` instances are indexed."""
    start = time.perf_counter()
    post(node, body)
    token_seconds = time.perf_counter() - start
    deadline = start + 1800
    while indexed(node) < count:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"only {indexed(node)} of {count} instances indexed")
        time.sleep(0.02)
    return token_seconds, time.perf_counter() - start


def bench_folder(count: int) -> list[list[object]]:
    data = store_set("small", count)
    rows: list[list[object]] = []
    folder = fresh_folder("post-folder")
    node = start_node(folder)
    try:
        result = node.cli("mapping", "add", "/bench", str(data.root))
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        token, total = timed_open(node, {"username": "bench", "role": ROLE,
                                         "folder": {"path": "/bench"}}, count)
        rows.append([f"POST folder ({count} files)", token, total, count / total])
    finally:
        node.stop()
        shutil.rmtree(folder, ignore_errors=True)
    folder = fresh_folder("post-storescu")
    peer = NodePeer(folder)
    peer.start()
    try:
        seconds = storescu(peer, [data.root])
        if peer.received() != count:
            raise RuntimeError(f"storescu: {peer.received()} of {count} indexed")
        rows.append([f"storescu same folder ({count} files)", "", seconds, count / seconds])
    finally:
        peer.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def bench_bucket(count: int) -> list[list[object]]:
    folder = fresh_folder("post-s3")
    moto = ServerProcess([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", "PORT"]).start(
        folder / "moto.log")
    try:
        spec = StudySpec(study_uid=uid(950, 1), patient_id="BENCH-S3", rows=64, columns=64,
                         instances_per_series=count)
        objects: dict[str, bytes] = {}
        instances = []
        for i in range(count):
            ds = make_instance(spec, 0, i)
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
            key = f"study/{i:05d}.dcm"
            objects[key] = out.getvalue()
            instances.append({"sopInstanceUID": str(ds.SOPInstanceUID), "file": key,
                              "mimeType": "application/dicom"})
        s3_put(moto.url, BUCKET, objects)
        body = {"username": "bench", "role": ROLE, "studies": [{
            "storage": {"name": BUCKET, "type": "aws-bucket", "region": "eu-central-1",
                        "accessKey": "bench", "secretAccessKey": "bench"},
            "studyInstanceUID": spec.study_uid,
            "series": [{"seriesInstanceUID": f"{spec.study_uid}.1", "instances": instances}],
        }]}
        node = start_node(folder / "node", cloud={"aws_endpoint_url": moto.url},
                          http={"max_body_bytes": 16 << 20})
        try:
            token, total = timed_open(node, body, count)
        finally:
            node.stop()
        return [[f"POST aws-bucket ({count} objects, moto)", token, total, count / total]]
    finally:
        moto.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--objects", type=int, default=500)
    args = parser.parse_args()
    rows = bench_folder(args.files) + bench_bucket(args.objects)
    print_table(["what", "token s", "all indexed s", "instances/s"], rows)


if __name__ == "__main__":
    main()
