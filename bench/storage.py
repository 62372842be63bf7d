"""Storage backends: the node on its storage folder vs the node on an S3 bucket (moto's S3
server on loopback), in the same run: ingest by storescu, then C-MOVE of the study to storescp
with the S3 node's read cache emptied (every file downloaded) and again with it warm.

    .venv/bin/python -m bench.storage                          # 300 small instances, 3 moves
    .venv/bin/python -m bench.storage --instances 200 --kind ct --repeat 1

moto is a Python server on the same two cores, so the S3 numbers are a floor for a real object
store's throughput but not its latency (a PUT to moto takes ~5 ms here, to S3 in the same
region 10-30 ms): what they show is what the node adds around the requests.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import uuid
from typing import Any

from bench.common import RUNS, StoreSCPPeer, fresh_folder, median, print_table, storescu
from bench.dataset import KINDS, single_study
from bench.move import _study_uid, move
from tests.cloud_peers import BIN, ServerProcess, s3_client
from tests.peers import NodeProcess

REGION = "eu-central-1"


class StorageNode:
    """`python -m node serve` with default settings on the given storage."""

    def __init__(self, name: str, storage: dict[str, Any], destination: dict[str, Any]) -> None:
        self.name = name
        self.ae_title = "VIEWNODE"
        self.process = NodeProcess(fresh_folder(f"storage-{name}"), extra={"storage": storage},
                                   move_destinations=[destination])

    @property
    def port(self) -> int:
        return self.process.dicom_port

    def start(self) -> None:
        data = self.process.data_dir
        data.mkdir(parents=True, exist_ok=True)
        credentials = data / "s3_credentials"
        credentials.write_text(json.dumps({"access_key_id": "bench",
                                           "secret_access_key": "bench"}))
        credentials.chmod(0o600)
        self.process.start()

    def empty_cache(self) -> None:
        shutil.rmtree(self.process.data_dir / "cache", ignore_errors=True)

    def received(self) -> int:
        with sqlite3.connect(self.process.data_dir / "index.sqlite") as db:
            return int(db.execute("SELECT count(*) FROM instances").fetchone()[0])

    def stop(self) -> None:
        self.process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=300, help="instances in the study")
    parser.add_argument("--kind", choices=sorted(KINDS), default="small",
                        help="ct: 512x512 16-bit; small: 64x64")
    parser.add_argument("--repeat", type=int, default=3, help="moves per case (median kept)")
    args = parser.parse_args()
    data = single_study(args.kind, args.instances)
    study_uid = _study_uid(data.root)

    moto = ServerProcess([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", "PORT"])
    moto.start(fresh_folder("storage-moto") / "moto.log")
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3_client(moto.url, REGION).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    destination = StoreSCPPeer(fresh_folder("storage-storescp"))
    destination.start()
    assert destination.process is not None
    dest = {"ae_title": destination.ae_title, "host": "127.0.0.1",
            "port": destination.process.port}
    nodes = [
        StorageNode("folder", {}, dest),
        StorageNode("s3", {"backend": "s3", "bucket": bucket, "endpoint_url": moto.url,
                           "region": REGION, "credentials_file": "s3_credentials"}, dest),
    ]
    ingest: dict[str, float] = {}
    moves: dict[tuple[str, str], list[float]] = {}
    try:
        for node in nodes:
            node.start()
            ingest[node.name] = storescu(node, [data.root])
            if node.received() != data.count:
                raise RuntimeError(f"{node.name} holds {node.received()} of {data.count}")
            print(f"{node.name}: ingest {data.count / ingest[node.name]:.0f} instances/s",
                  flush=True)
        for _ in range(args.repeat):
            for node in nodes:  # alternate, so that a busy moment hits both
                for cache in ("cold", "warm"):
                    if cache == "cold":
                        node.empty_cache()
                    elapsed = move(node, study_uid, destination)
                    if len(destination.process.received()) != data.count:
                        raise RuntimeError(f"storescp got {len(destination.process.received())} "
                                           f"of {data.count} from {node.name}")
                    moves.setdefault((node.name, cache), []).append(elapsed)
    finally:
        for node in nodes:
            node.stop()
        destination.stop()
        moto.stop()
        for folder in ("storage-folder", "storage-s3", "storage-storescp", "storage-moto"):
            shutil.rmtree(RUNS / folder, ignore_errors=True)
    print()
    print(f"{data.count} x {args.kind}: storescu into the node, then C-MOVE to storescp "
          f"(median of {args.repeat}); instances/s")
    print_table(
        ["storage", "ingest", "C-MOVE, cache emptied", "C-MOVE, cache warm"],
        [[node.name, data.count / ingest[node.name],
          data.count / median(moves[(node.name, "cold")]),
          data.count / median(moves[(node.name, "warm")])] for node in nodes],
    )


if __name__ == "__main__":
    main()
