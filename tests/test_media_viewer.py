"""The viewer on a medium, as an operator adds Weasis portable: `[media] viewer_dir` names the
unpacked distribution, the medium carries it under VIEWER/ with a launcher per platform at the
root, and each launcher starts it on the medium's images wherever the medium is mounted.

Weasis cannot be fetched here, so a stand-in folder has its layout and file names, and its
Linux and macOS scripts behave like Weasis's own in the one way that matters: they pass on only
Weasis commands (arguments starting with `$`), unquoted, and drop everything else. The medium
is built in-process, written as an ISO, read back with osirrox (Rock Ridge keeps the executable
bits), and its launchers are run from the extracted copy.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from dicomdir.medium import build_medium, medium_options
from dicomdir.selection import select_studies
from node.config import load_config
from node.process.runtime import open_services
from tests.factory import StudySpec, uid, write_study

STUDY = StudySpec(study_uid=uid(7301), patient_id="PID7301", instances_per_series=2)
# What Weasis portable's viewer-linux.sh (and viewer-mac.sh) does with its arguments before
# starting Java, followed by printing what Java would get, one argument a line.
WEASIS_LIKE_SCRIPT = """#!/bin/bash
userParameters=()
for var in "$@"
do
if [[ $var == \\$* ]]
then
  userParameters+=("$var")
fi
done
printf '%s\\n' \\$dicom:get --portable ${userParameters[@]}
"""


def weasis_portable_stand_in(folder: Path) -> Path:
    """The files of weasis-portable.zip that matter here, under their own names."""
    folder.mkdir(parents=True)
    (folder / "viewer-win32.exe").write_bytes(b"MZ stand-in")
    (folder / "viewer-win32.l4j.ini").write_text("-Xms64m\n")
    linux = folder / "viewer-linux.sh"
    linux.write_text(WEASIS_LIKE_SCRIPT)
    linux.chmod(0o755)
    macos = folder / "viewer-mac.app" / "Contents" / "MacOS"
    macos.mkdir(parents=True)
    (macos / "viewer-mac.sh").write_text(WEASIS_LIKE_SCRIPT)
    (macos / "viewer-mac.sh").chmod(0o755)
    (folder / "viewer-mac.app" / "Contents" / "Info.plist").write_text("<plist/>\n")
    (folder / "weasis" / "conf").mkdir(parents=True)
    (folder / "weasis" / "weasis-launcher.jar").write_bytes(b"PK\3\4")
    (folder / "weasis" / "conf" / "config.properties").write_text(
        "weasis.portable.dicom.directory=dicom,DICOM,IMAGES,images\n")
    return folder


def medium_root(folder: Path, media: str) -> Path:
    """Index STUDY on a node configured with `media` (a [media] table's lines), build its
    medium as `python -m node iso` would, write the ISO, and extract it."""
    config_path = folder / "node.toml"
    config_path.write_text(f'[node]\ndata_dir = "{folder / "data"}"\n[storage]\nfsync = false\n'
                           f"[media]\n{media}")
    paths = write_study(folder / "source", STUDY)

    async def build() -> None:
        config = load_config(config_path)
        async with open_services(config) as services:
            for path in paths:
                await services.ingestor.ingest_copy(path, "import")
            selection = await select_studies(services.sessions, services.storage,
                                             [STUDY.study_uid])
        with build_medium(selection, medium_options(config)) as built, \
                (folder / "medium.iso").open("wb") as out:
            for chunk in built.image.chunks():
                out.write(chunk)

    asyncio.run(build())
    root = folder / "mounted at a path with spaces"
    result = subprocess.run(["osirrox", "-indev", str(folder / "medium.iso"), "-extract", "/",
                             str(root)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return root


def test_weasis_portable_is_started_on_the_mediums_images(tmp_path: Path) -> None:
    viewer = weasis_portable_stand_in(tmp_path / "weasis-portable")
    root = medium_root(tmp_path, f'viewer_dir = "{viewer}"\n')
    assert (root / "VIEWER" / "weasis" / "conf" / "config.properties").is_file()
    assert os.access(root / "VIEWER" / "viewer-linux.sh", os.X_OK)
    command = f'$dicom:get -l "{root / "DICOM"}"'
    assert any((root / "DICOM").rglob("*"))

    linux = subprocess.run([str(root / "START.SH")], capture_output=True, text=True,
                           timeout=10)
    assert linux.returncode == 0, linux.stderr
    # Weasis joins a command's words again and reads the quoted path as one.
    assert " ".join(linux.stdout.split("\n")[2:]).strip() == command

    # macOS: `open -a VIEWER/viewer-mac.app --args ...`; a stand-in `open` prints its arguments.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "open").write_text("#!/bin/sh\nprintf '%s\\n' \"$@\"\n")
    (fake_bin / "open").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"}
    macos = subprocess.run(["sh", str(root / "START.COMMAND")], capture_output=True, text=True,
                           timeout=10, env=env)
    assert macos.stdout.splitlines() == [
        "-a", str(root / "VIEWER" / "viewer-mac.app"), "--args", command]

    # Windows: START.BAT from AUTORUN.INF, the same command with the medium's drive.
    assert "shellexecute=START.BAT" in (root / "AUTORUN.INF").read_text()
    batch = (root / "START.BAT").read_text()
    assert ('start "" "%~dp0VIEWER\\viewer-win32.exe" "$dicom:get -l \\"%~dp0DICOM\\""'
            in batch)


def test_viewer_arguments_serve_a_viewer_that_takes_a_path(tmp_path: Path) -> None:
    viewer = tmp_path / "viewer"
    viewer.mkdir()
    (viewer / "viewer-linux.sh").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (viewer / "viewer-linux.sh").chmod(0o755)
    root = medium_root(tmp_path, f'viewer_dir = "{viewer}"\n'
                                 'viewer_arguments = ["--open", "{dicomdir}"]\n')
    run = subprocess.run([str(root / "START.SH")], capture_output=True, text=True, timeout=10)
    assert run.stdout.splitlines() == ["--open", str(root / "DICOMDIR")]
    assert not (root / "START.BAT").exists()  # no Windows executable, no Windows launcher
    assert "shellexecute=INDEX.HTM" in (root / "AUTORUN.INF").read_text()


def test_without_a_viewer_folder_the_medium_carries_its_html_pages(tmp_path: Path) -> None:
    root = medium_root(tmp_path, "")
    assert (root / "INDEX.HTM").is_file() and (root / "DICOMDIR").is_file()
    assert not (root / "VIEWER").exists()
    assert not [p for p in root.iterdir() if p.name.startswith("START.")]
