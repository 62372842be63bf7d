"""`import` puts folders into the node through the ingest path and can resume; `check` finds
where the index and the storage disagree and `check --repair` makes them agree again.

These run the CLI against a node folder of their own that is not serving.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom.data
import pytest
from pydicom import dcmread

from node.errors import InvalidInput
from node.ingest.file_completeness import check_complete
from tests.factory import StudySpec, make_instance, uid, write_jpeg_instance, write_study
from tests.index_db import rows
from tests.peers import PEER_ENV, REPO, NodeProcess, incoming_files


@pytest.fixture
def cli_node(tmp_path: Path) -> NodeProcess:
    node = NodeProcess(tmp_path / "node")
    node.write_config()
    return node


def indexed_sop_uids(node: NodeProcess) -> set[str]:
    return {row[0] for row in rows(node.data_dir, "SELECT sop_uid FROM instances")}


def count(node: NodeProcess, table: str) -> int:
    return int(rows(node.data_dir, f"SELECT COUNT(*) FROM {table}")[0][0])


def stored_path(node: NodeProcess, sop_uid: str) -> Path:
    ((relative,),) = rows(node.data_dir, "SELECT path FROM instances WHERE sop_uid = :sop",
                          sop=sop_uid)
    return node.data_dir / "storage" / relative


def test_import_reports_imported_duplicates_and_rejected_with_reasons(
    cli_node: NodeProcess, tmp_path: Path
) -> None:
    folder = tmp_path / "incoming-cd"
    good = write_study(folder / "study", StudySpec(study_uid=uid(9100), patient_id="IMP1",
                                                   series=2, instances_per_series=3))
    duplicate = folder / "copies" / "again.dcm"
    duplicate.parent.mkdir()
    shutil.copy(good[0], duplicate)
    whole = folder / "whole.dcm"
    make_instance(StudySpec(study_uid=uid(9101), patient_id="IMP1"), 0, 0).save_as(
        whole, enforce_file_format=True)
    truncated = folder / "cut" / "truncated.dcm"
    truncated.parent.mkdir()
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    text = folder / "README.txt"
    text.write_text("not an image\n")

    result = cli_node.cli("import", str(folder))

    assert result.returncode == 1, result.stdout + result.stderr
    assert "imported 6, duplicates 1, rejected 2, skipped 0 already imported" in result.stdout
    assert f"{truncated}: truncated file" in result.stdout
    assert f"{text}: not a DICOM file" in result.stdout
    assert indexed_sop_uids(cli_node) == {p.stem for p in good}
    assert incoming_files(cli_node.data_dir) == []

    again = cli_node.cli("import", str(folder))
    assert again.returncode == 1
    assert "imported 0, duplicates 0, rejected 2, skipped 7 already imported" in again.stdout


def test_import_of_only_good_files_exits_zero(cli_node: NodeProcess, tmp_path: Path) -> None:
    files = write_study(tmp_path / "s", StudySpec(study_uid=uid(9150), patient_id="IMP2"))
    result = cli_node.cli("import", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "imported 2, duplicates 0, rejected 0" in result.stdout


def test_interrupted_import_resumes_where_it_stopped(
    cli_node: NodeProcess, tmp_path: Path
) -> None:
    folder = tmp_path / "big"
    files = write_study(folder, StudySpec(study_uid=uid(9200), patient_id="IMP3", series=4,
                                          instances_per_series=75, rows=16, columns=16))
    journal_dir = cli_node.data_dir / "import-journal"
    first = subprocess.Popen(
        [sys.executable, "-m", "node", "import", str(folder), "--config",
         str(cli_node.config_path)],
        cwd=REPO, env=PEER_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    done = 0
    while first.poll() is None and time.monotonic() < deadline:
        journals = list(journal_dir.glob("*")) if journal_dir.exists() else []
        done = sum(len(j.read_bytes().splitlines()) for j in journals)
        if done >= 40:
            first.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    first.communicate(timeout=30)
    assert 40 <= done < len(files), "the import was not interrupted part way"

    second = cli_node.cli("import", str(folder))
    assert second.returncode == 0, second.stdout + second.stderr
    summary = second.stdout.splitlines()[0]
    numbers = dict(
        (part.split()[0], int(part.split()[1]))
        for part in summary.replace(" already imported", "").split(", ")
    )
    assert numbers["skipped"] >= 40
    assert numbers["imported"] + numbers["duplicates"] + numbers["skipped"] == len(files)
    assert indexed_sop_uids(cli_node) == {p.stem for p in files}


def test_check_finds_missing_and_unindexed_files_and_repair_fixes_them(
    cli_node: NodeProcess, tmp_path: Path
) -> None:
    kept = write_study(tmp_path / "kept", StudySpec(study_uid=uid(9300), patient_id="CHK1"))
    lost = write_study(tmp_path / "lost", StudySpec(study_uid=uid(9301), patient_id="CHK2",
                                                    instances_per_series=1))
    assert cli_node.cli("import", str(tmp_path / "kept"), str(tmp_path / "lost")).returncode == 0
    assert count(cli_node, "patients") == 2

    lost_path = stored_path(cli_node, lost[0].stem)
    lost_path.unlink()
    extra = make_instance(StudySpec(study_uid=uid(9302), patient_id="CHK1"), 0, 0)
    dropped = cli_node.data_dir / "storage" / "dropped-by-hand.dcm"
    extra.save_as(dropped, enforce_file_format=True)

    report = cli_node.cli("check")
    assert report.returncode == 1, report.stdout
    assert "index rows whose file is missing: 1" in report.stdout
    assert str(lost_path.relative_to(cli_node.data_dir / "storage")) in report.stdout
    assert "files in storage not in the index: 1" in report.stdout
    assert "dropped-by-hand.dcm" in report.stdout
    assert "files whose size differs from the index: 0" in report.stdout

    repaired = cli_node.cli("check", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr

    after = cli_node.cli("check")
    assert after.returncode == 0, after.stdout
    assert indexed_sop_uids(cli_node) == {p.stem for p in kept} | {extra.SOPInstanceUID}
    # The lost instance's study and patient went with it; the dropped file moved into place.
    assert count(cli_node, "patients") == 1
    assert count(cli_node, "studies") == 2
    assert not dropped.exists()
    assert stored_path(cli_node, extra.SOPInstanceUID).exists()


def test_repair_recounts_the_size_of_a_study_that_lost_an_instance(
    cli_node: NodeProcess, tmp_path: Path
) -> None:
    files = write_study(tmp_path / "study", StudySpec(study_uid=uid(9310), patient_id="CHK3",
                                                      series=1, instances_per_series=3))
    assert cli_node.cli("import", str(tmp_path / "study")).returncode == 0
    stored_path(cli_node, files[0].stem).unlink()
    assert cli_node.cli("check", "--repair").returncode == 0
    kept = sum(stored_path(cli_node, path.stem).stat().st_size for path in files[1:])
    assert rows(cli_node.data_dir, "SELECT size_bytes, instance_count FROM studies "
                "WHERE study_uid = :uid", uid=uid(9310)) == [(kept, 2)]


def test_check_reports_a_file_whose_size_differs(cli_node: NodeProcess, tmp_path: Path) -> None:
    files = write_study(tmp_path / "s", StudySpec(study_uid=uid(9400), patient_id="CHK3"))
    assert cli_node.cli("import", str(tmp_path / "s")).returncode == 0
    damaged = stored_path(cli_node, files[0].stem)
    damaged.write_bytes(damaged.read_bytes()[:-100])

    repaired = cli_node.cli("check", "--repair")
    assert "files whose size differs from the index: 1" in repaired.stdout
    # A damaged file cannot be repaired in place: it is set aside and its row removed.
    assert repaired.returncode == 1
    assert "moved to quarantine" in repaired.stdout
    assert "truncated file" in repaired.stdout
    assert cli_node.cli("check").returncode == 0
    assert indexed_sop_uids(cli_node) == {files[1].stem}
    assert list((cli_node.data_dir / "quarantine").rglob("*.dcm"))


def test_completeness_walk_rejects_cuts_and_accepts_every_encoding(tmp_path: Path) -> None:
    """The walk `import` relies on: any cut inside the pixel data (native or encapsulated) is
    refused, while whole files in every transfer syntax pass."""
    native = tmp_path / "native.dcm"
    make_instance(StudySpec(study_uid=uid(9500)), 0, 0).save_as(native, enforce_file_format=True)
    jpeg = tmp_path / "jpeg.dcm"
    write_jpeg_instance(jpeg, StudySpec(study_uid=uid(9501)))
    whole = [native, jpeg] + [
        Path(str(pydicom.data.get_testdata_file(name)))
        for name in ("CT_small.dcm", "ExplVR_BigEnd.dcm", "image_dfl.dcm", "rtplan.dcm",
                     "MR_small_RLE.dcm", "JPEG2000.dcm")
    ]
    for path in whole:
        check_complete(path)

    cut = tmp_path / "cut.dcm"
    for path in (native, jpeg):
        data = path.read_bytes()
        pixels_start = len(data) - len(dcmread(path).PixelData)
        for end in range(pixels_start - 4, len(data), 97):
            cut.write_bytes(data[:end])
            with pytest.raises(InvalidInput, match="truncated file"):
                check_complete(cut)
    cut.write_bytes(b"\0" * 128 + b"DICM")
    with pytest.raises(InvalidInput):
        check_complete(cut)
    cut.write_text("plain text that is long enough to have a preamble " * 4)
    with pytest.raises(InvalidInput, match="not a DICOM file"):
        check_complete(cut)
