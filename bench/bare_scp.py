"""A plain pynetdicom C-STORE SCP: the ceiling the node's ingest is measured against.

pynetdicom as its documentation shows it, with none of the node's set-up: an AE accepting every
storage SOP class in every transfer syntax pynetdicom knows, pynetdicom's own association loops
and defaults (PDU size, timeouts, logging handlers), and an EVT_C_STORE handler that moves the
received file into the output folder and answers success: no parsing, no fsync, no index. The
one option set is pynetdicom's documented chunked receive (`STORE_RECV_CHUNKED_DATASET`): each
data set goes to a file as it arrives, without being decoded, as the node receives it too. So
the difference between the two is what the node adds (validation, durability, indexing) less
what its own transport saves.

    python -m bench.bare_scp --port 11113 --out DIR
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
from pathlib import Path

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ae-title", default="BARE")
    args = parser.parse_args()
    incoming = args.out / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    # pynetdicom writes each received data set to a temporary file: on the output folder's
    # file system, moving it there is a rename.
    tempfile.tempdir = str(incoming)
    _config.STORE_RECV_CHUNKED_DATASET = True
    ae = AE(ae_title=args.ae_title)
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    counter = itertools.count()
    out = str(args.out)

    def handle_store(event: Event) -> int:
        os.replace(event.dataset_path, os.path.join(out, f"{next(counter)}.dcm"))
        return 0x0000

    ae.start_server(
        ("127.0.0.1", args.port), block=True, evt_handlers=[(evt.EVT_C_STORE, handle_store)]
    )


if __name__ == "__main__":
    main()
