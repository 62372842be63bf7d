"""The fence around the fast path: every replacement of pynetdicom's and pydicom's internals is
applied here, all of them or none, once per process, before any association.

The fast path is written against one pynetdicom and one pydicom release (SUPPORTED). Any other
release, `dicom.fast_path = false`, or `--verbose` (pynetdicom's message logging wants its own
decoded objects) leaves both libraries untouched, and the node runs on plain pynetdicom: every
promise of the README then holds through the node's own handlers and server class
(node/dimse/store_scp.py, node/dimse/pdu_guard.py). Nothing else in the project patches
pynetdicom.

Each module of this package names what it replaces in a `patch(patches)` function; a failure in
any of them puts back everything replaced before it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import pydicom
import pynetdicom
from pynetdicom import _config

from node.dimse.fastpath import (
    association_costs,
    command_set_reader,
    event_driven_loops,
    file_meta,
    find_identifiers,
    message_bytes,
    store_answer,
    store_receiver,
    stored_file_sending,
    tcp_sockets,
)
from node.dimse.fastpath.patches import Patches

log = logging.getLogger(__name__)

# The releases the fast path was written and measured against.
SUPPORTED = {"pynetdicom": "3.0.4", "pydicom": "3.0.2"}

# In the order they are applied: later ones build on earlier ones (the store receiver and the
# message writer on the event-driven DUL, the receiver on the command set reader).
PATCHES: tuple[Callable[[Patches], None], ...] = (
    tcp_sockets.patch,
    association_costs.patch,
    file_meta.patch,
    command_set_reader.patch,
    event_driven_loops.patch,
    message_bytes.patch,
    find_identifiers.patch,
    stored_file_sending.patch,
)

_installed: bool | None = None  # None: install() not called yet in this process


def found_versions() -> dict[str, str]:
    return {"pynetdicom": pynetdicom.__version__, "pydicom": pydicom.__version__}


def unfit_reason() -> str | None:
    """Why the fast path cannot go in here, or None when it can."""
    found = found_versions()
    if found != SUPPORTED:
        wanted = ", ".join(f"{name} {version}" for name, version in SUPPORTED.items())
        have = ", ".join(f"{name} {version}" for name, version in found.items())
        return f"written for {wanted}, found {have}"
    if sys.platform == "win32":
        return "the event-driven loops need select() on a pipe"
    return None


def install(enabled: bool = True, why_not: str = "") -> bool:
    """Apply the fast path (all of it) when `enabled` and the versions fit; once per process,
    later calls answer what the first decided. `why_not` says, for the log, why it is not
    enabled."""
    global _installed
    if _installed is not None:
        return _installed
    _installed = False
    if not enabled:
        log.info("DICOM fast path off (%s): plain pynetdicom", why_not or "not enabled")
        return False
    reason = unfit_reason()
    if reason is not None:
        log.warning("DICOM fast path off: %s; running on plain pynetdicom (every promise of "
                    "the README holds without it)", reason)
        return False
    patches = Patches()
    try:
        for patch in PATCHES:
            patch(patches)
    except Exception:
        patches.undo()
        log.exception("DICOM fast path off: a patch failed, every other one undone")
        return False
    # Received data sets go to a file as they arrive, read by the store receiver; each finished
    # request is offered to the store SCP's direct answer first.
    _config.STORE_RECV_CHUNKED_DATASET = True
    store_receiver.enable_store_receive(store_answer.answer)
    _installed = True
    log.info("DICOM fast path on (%d replacements in pynetdicom %s)", len(patches),
             pynetdicom.__version__)
    return True


def installed() -> bool:
    """Whether the fast path is in (False before install() too)."""
    return bool(_installed)


class _Recorder(Patches):
    """Patches that only notes what would be replaced."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[tuple[Any, str]] = []

    def replace(self, owner: Any, name: str, value: Any) -> None:
        self.targets.append((owner, name))


def patch_targets() -> list[tuple[Any, str]]:
    """Every (class or module, attribute) the fast path replaces, without replacing any: what a
    test compares before and after an install that must change nothing."""
    recorder = _Recorder()
    for patch in PATCHES:
        patch(recorder)
    return recorder.targets
