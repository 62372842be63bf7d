"""A bare pynetdicom C-STORE SCP: the ceiling the node's ingest is measured against.

It receives each dataset straight to a file (chunked receive, as the node does), moves that file
into the output folder and answers success: no parsing, no fsync, no index. Its pynetdicom
transport is set up exactly like the node's (TCP_NODELAY, PDU size, loop settings), so the
difference between the two is what the node adds: validation, durability and indexing.

    python -m bench.bare_scp --port 11113 --out DIR
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.events import Event

from node.config import Config
from node.dimse.server import build_ae, configure_pynetdicom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ae-title", default="BARE")
    args = parser.parse_args()
    incoming = args.out / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(incoming)
    configure_pynetdicom()
    config = Config()
    ae = build_ae(config)
    ae.ae_title = args.ae_title
    counter = itertools.count()
    out = str(args.out)

    def handle_store(event: Event) -> Dataset | int:
        os.replace(event.dataset_path, os.path.join(out, f"{next(counter)}.dcm"))
        return 0x0000

    ae.start_server(
        ("127.0.0.1", args.port), block=True, evt_handlers=[(evt.EVT_C_STORE, handle_store)]
    )


if __name__ == "__main__":
    main()
