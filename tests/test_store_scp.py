"""C-STORE from DCMTK's storescu: what is sent is stored and indexed."""

from __future__ import annotations

from pathlib import Path

from tests.factory import StudySpec, uid, write_study
from tests.index_db import rows
from tests.peers import NodeProcess, dcmtk


def indexed_sop_uids(node: NodeProcess) -> set[str]:
    return {row[0] for row in rows(node.data_dir, "SELECT sop_uid FROM instances")}


def test_echoscu_gets_success(node: NodeProcess) -> None:
    result = dcmtk("echoscu", "-aec", node.ae_title, "127.0.0.1", str(node.dicom_port))
    assert result.returncode == 0, result.stderr


def test_storescu_folder_is_stored_and_indexed(node: NodeProcess, tmp_path: Path) -> None:
    files = write_study(tmp_path / "study", StudySpec(study_uid=uid(100), instances_per_series=5))
    result = dcmtk("storescu", "-aec", node.ae_title, "+sd", "+r", "127.0.0.1",
                   str(node.dicom_port), str(tmp_path / "study"))
    assert result.returncode == 0, result.stderr
    sent = {p.stem for p in files}
    assert sent <= indexed_sop_uids(node)
