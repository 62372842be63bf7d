"""The fence around the DIMSE fast path (node/dimse/fastpath/installer.py): install() applies
every replacement or none. An unexpected pynetdicom version, or a patch that fails half-way,
leaves pynetdicom and pydicom exactly as they were, says so in one log line, and the node keeps
its promises on plain pynetdicom.

Each install runs in a fresh interpreter: an install is once per process, and this one's may
hold the fast path already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.peers import PEER_ENV, REPO, NodeProcess, dcmtk
from tests.test_dicom_limits import assert_aborted, associated, huge_pdu

INSTALL = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
import pynetdicom
{before}
from pynetdicom import _config
from node.config import config_from_dict
from node.dimse import fastpath
from node.dimse.fastpath import installer
from node.dimse.pynetdicom_setup import setup_pynetdicom
targets = fastpath.patch_targets()
originals = [getattr(owner, name) for owner, name in targets]
{prepare}
on = setup_pynetdicom(config_from_dict({{}}))
now = [getattr(owner, name) for owner, name in targets]
print(json.dumps({{
    "on": on, "installed": fastpath.installed(), "targets": len(targets),
    "replaced": sum(a is not b for a, b in zip(originals, now)),
    "chunked_receive": _config.STORE_RECV_CHUNKED_DATASET,
}}))
"""


def install_in_fresh_interpreter(before: str = "", prepare: str = "") -> tuple[dict[str, object],
                                                                                str]:
    """What setup_pynetdicom did in a new process, and what it logged."""
    code = INSTALL.format(before=before, prepare=textwrap.dedent(prepare))
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=PEER_ENV)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


def test_the_versions_it_was_written_for_get_every_replacement() -> None:
    outcome, log = install_in_fresh_interpreter()
    assert outcome["on"] is True and outcome["installed"] is True
    assert outcome["targets"] == outcome["replaced"] and int(outcome["targets"]) >= 15
    assert outcome["chunked_receive"] is True
    assert "DICOM fast path on" in log


def test_an_unexpected_pynetdicom_version_gets_no_replacement_and_one_log_line() -> None:
    outcome, log = install_in_fresh_interpreter(before='pynetdicom.__version__ = "3.0.99"')
    assert outcome == {"on": False, "installed": False, "targets": outcome["targets"],
                       "replaced": 0, "chunked_receive": False}
    lines = [line for line in log.splitlines() if "fast path" in line]
    assert len(lines) == 1 and "pynetdicom 3.0.99" in lines[0], log


def test_an_unexpected_pydicom_version_gets_no_replacement() -> None:
    outcome, log = install_in_fresh_interpreter(
        before='import pydicom\npydicom.__version__ = "9.0.0"')
    assert outcome["on"] is False and outcome["replaced"] == 0
    assert "pydicom 9.0.0" in log


def test_a_patch_that_fails_half_way_leaves_nothing_replaced() -> None:
    outcome, log = install_in_fresh_interpreter(prepare="""
        def failing(patches):
            raise RuntimeError("a patch that does not fit")
        half = len(installer.PATCHES) // 2
        installer.PATCHES = installer.PATCHES[:half] + (failing,) + installer.PATCHES[half:]
        """)
    assert outcome["on"] is False and outcome["installed"] is False
    assert outcome["replaced"] == 0
    assert "every other one undone" in log



def refuses_a_huge_pdu_then_serves(node: NodeProcess) -> str:
    """An over-long P-DATA-TF is aborted and the node goes on answering C-ECHO; its log."""
    try:
        with associated(node) as sock:
            sock.sendall(huge_pdu(0x04))
            assert_aborted(sock)
        echo = dcmtk("echoscu", "-aec", node.ae_title, "127.0.0.1", str(node.dicom_port))
        assert echo.returncode == 0, echo.stderr
    finally:
        node.stop()
    return node.log_text()


def test_a_node_on_an_unexpected_pynetdicom_keeps_its_pdu_limits(tmp_path: Path) -> None:
    """The node started with a pynetdicom version the fast path does not know: it serves on
    plain pynetdicom and still refuses an over-long PDU with an A-ABORT, and stores."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import pynetdicom\npynetdicom.__version__ = '3.0.99'\n")
    node = NodeProcess(tmp_path / "node", env={**PEER_ENV, "PYTHONPATH": str(shim)},
                       extra={"dicom": {"fast_path": True}}).start()
    log = refuses_a_huge_pdu_then_serves(node)
    assert "DICOM fast path off: written for" in log and "3.0.99" in log
    assert "longer than the 262144 accepted" in log


def test_a_verbose_node_runs_plain_pynetdicom_and_keeps_its_pdu_limits(tmp_path: Path) -> None:
    """--verbose turns pynetdicom's message logging on, which reads its own decoded objects: the
    node then runs without the fast path, and nothing that keeps a promise goes with it."""
    node = NodeProcess(tmp_path / "node", verbose=True).start()
    log = refuses_a_huge_pdu_then_serves(node)
    assert "DICOM fast path off (--verbose" in log
    assert "longer than the 262144 accepted" in log
