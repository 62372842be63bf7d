"""When this instance last received a file: the change time of its incoming/ folders.

Every ingest (C-STORE, STOW-RS, imports, retrievals) begins with a file made in incoming/ and
ends with that file renamed or removed, and each of those changes the folder's modification
time. Reading those times (one stat per worker) tells any process of the instance whether any
of them is ingesting, without the workers telling each other anything; the deletion job uses
it to remove files only while ingest pauses (node/retention/deletion.py).
"""

from __future__ import annotations

import time
from pathlib import Path

# A serving worker's incoming/ folder is incoming/worker-<n> (node/process/runtime.py).
_WORKER_FOLDERS = "worker-*"


def seconds_since_incoming(incoming: Path) -> float:
    """Seconds since a file was last made or taken away in this process's incoming folder
    `incoming` or, for a worker, in its siblings' and their parent's (where a command such as
    `import` run beside the node makes its files); infinite when none can be read."""
    folders = [incoming]
    if incoming.match(_WORKER_FOLDERS):
        folders.append(incoming.parent)
        folders.extend(incoming.parent.glob(_WORKER_FOLDERS))
    latest = 0.0
    for folder in folders:
        try:
            latest = max(latest, folder.stat().st_mtime)
        except OSError:  # a worker's folder made or removed meanwhile
            continue
    return time.time() - latest if latest else float("inf")
