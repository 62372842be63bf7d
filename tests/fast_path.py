"""Whether the tests run the node's DIMSE fast path (node/dimse/fastpath/): on unless
`VIEWNODE_TEST_FAST_PATH=0`, which runs every node a test starts, and this process's pynetdicom,
plain (manage.sh's second pass over the DICOM tests)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ON = os.environ.get("VIEWNODE_TEST_FAST_PATH", "1").strip() != "0"


def setup_this_process() -> bool:
    """Set this process's pynetdicom up as a node's (once), with the fast path as the session
    runs it; whether it is in."""
    from node.config import config_from_dict
    from node.dimse.pynetdicom_setup import setup_pynetdicom

    return setup_pynetdicom(config_from_dict({"dicom": {"fast_path": ON}}))


def require_fast_path() -> None:
    """For tests of the fast path's own parts: skipped when the session runs without it."""
    if not ON:
        pytest.skip("VIEWNODE_TEST_FAST_PATH=0: the fast path is not installed")
    assert setup_this_process(), "the fast path did not install"


def receive_in(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Received data sets go to `folder` for one test, as the node points them at its incoming/
    (undone after the test: the receiver's setting is per process, and an earlier test's
    server set it too)."""
    from node.dimse.fastpath import store_receiver

    monkeypatch.setattr(store_receiver, "_incoming_folder", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
