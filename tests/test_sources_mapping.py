"""Storage mappings: a caller's path is read only under a mapped folder, through its container
path, and never outside it (`..`, symbolic links, partial folder names)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.config import Config
from node.errors import Conflict, InvalidInput, NotFound
from node.process.runtime import open_services
from node.sources.storage_mapping import (
    MappingTable,
    StorageMapping,
    add_mapping,
    files_beneath,
    list_mappings,
    load_mappings,
    normalise_absolute,
    open_beneath,
    remove_mapping,
)
from tests.index_db import database_toml
from tests.peers import REPO


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """container/one (mapped from /one/storage), container/two (from /storage), secrets/."""
    for folder in ("container/one/images", "container/two/studies/a", "container/two2",
                   "secrets"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "container/one/images/x.dcm").write_bytes(b"one")
    (tmp_path / "container/two/studies/a/y.dcm").write_bytes(b"two")
    (tmp_path / "container/two2/z.dcm").write_bytes(b"not mapped")
    # A FIFO: opening it for reading would block, so a test that returns proves it unopened.
    os.mkfifo(tmp_path / "secrets/passwd")
    return tmp_path


def table(root: Path) -> MappingTable:
    return MappingTable([
        StorageMapping("/one/storage", str(root / "container/one")),
        StorageMapping("/storage", str(root / "container/two")),
        StorageMapping("/storage/studies/a", str(root / "container/two/studies/a")),
    ])


def test_a_path_is_translated_by_the_longest_matching_prefix(layout: Path) -> None:
    mappings = table(layout)
    resolved = mappings.resolve("/storage/studies/a/y.dcm", "file")
    assert resolved.root == (layout / "container/two/studies/a").resolve()
    assert resolved.absolute.read_bytes() == b"two"
    assert mappings.resolve("/one/storage/images/x.dcm", "f").absolute.read_bytes() == b"one"


def test_a_prefix_matches_whole_folder_names_only(layout: Path) -> None:
    with pytest.raises(InvalidInput, match="outside every storage mapping") as caught:
        table(layout).resolve("/storage2/z.dcm", "studies[0].series[0].instances[0].file")
    assert caught.value.field == "studies[0].series[0].instances[0].file"


def test_a_path_outside_every_mapping_is_refused(layout: Path) -> None:
    with pytest.raises(InvalidInput, match="outside every storage mapping"):
        table(layout).resolve(str(layout / "secrets/passwd"), "file")


@pytest.mark.parametrize("path", [
    "/storage/../secrets/passwd", "/storage/studies/../../secrets/passwd",
    "/storage/studies/a/../a/y.dcm",
])
def test_dot_dot_is_refused(layout: Path, path: str) -> None:
    with pytest.raises(InvalidInput, match=r"'\.\.'"):
        table(layout).resolve(path, "file")


def test_a_symbolic_link_out_of_the_mapped_folder_is_refused(layout: Path) -> None:
    (layout / "container/two/escape").symlink_to(layout / "secrets")
    (layout / "container/two/passwd.dcm").symlink_to(layout / "secrets/passwd")
    for path in ("/storage/escape/passwd", "/storage/passwd.dcm"):
        with pytest.raises(InvalidInput, match="leads out of its mapped folder"):
            table(layout).resolve(path, "file")


def test_a_symbolic_link_inside_the_mapped_folder_is_followed(layout: Path) -> None:
    (layout / "container/two/latest").symlink_to(layout / "container/two/studies/a")
    assert table(layout).resolve("/storage/latest/y.dcm", "f").absolute.read_bytes() == b"two"


def test_a_missing_file_or_folder_is_refused_by_name(layout: Path) -> None:
    with pytest.raises(InvalidInput, match=r"file not found: /storage/nothing\.dcm"):
        table(layout).resolve("/storage/nothing.dcm", "file")
    with pytest.raises(InvalidInput, match="folder not found"):
        table(layout).resolve("/storage/studies/a/y.dcm", "folder.path", kind="folder")


@pytest.mark.parametrize("path", ["storage/x.dcm", "", "/storage/\x00x"])
def test_relative_or_odd_paths_are_refused(layout: Path, path: str) -> None:
    with pytest.raises(InvalidInput):
        table(layout).resolve(path, "file")


def test_opening_refuses_a_link_swapped_in_after_the_check(layout: Path) -> None:
    resolved = table(layout).resolve("/storage/studies/a/y.dcm", "f")
    folder = layout / "container/two/studies/a"
    folder.rename(layout / "container/two/studies/old")
    folder.symlink_to(layout / "secrets")
    with pytest.raises(InvalidInput, match="cannot be opened safely"):
        open_beneath(resolved)


def test_a_folder_walk_stays_inside_the_mapped_folder(layout: Path) -> None:
    inside = layout / "container/two"
    (inside / "studies/b").mkdir()
    (inside / "studies/b/w.dcm").write_bytes(b"w")
    (inside / "studies/link-out").symlink_to(layout / "secrets")
    (inside / "studies/file-out.dcm").symlink_to(layout / "secrets/passwd")
    (inside / "studies/file-in.dcm").symlink_to(inside / "studies/b/w.dcm")
    folder = MappingTable([StorageMapping("/storage", str(inside))]).resolve(
        "/storage/studies", "folder.path", kind="folder")
    found = [f.host_path for f in files_beneath(folder)]
    assert sorted(found) == ["/storage/studies/a/y.dcm", "/storage/studies/b/w.dcm",
                             "/storage/studies/file-in.dcm"]


def test_normalising_keeps_absolute_paths_tidy() -> None:
    assert normalise_absolute("//storage//a/./b/", "p") == "/storage/a/b"
    assert normalise_absolute("/", "p") == "/"


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node", "mapping", *args, "--config",
                           str(config)], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_mapping_commands_add_list_and_remove(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[node]\ndata_dir = "data"\n' + database_toml(tmp_path / "data"))
    (tmp_path / "vol").mkdir()
    added = run_cli(config, "add", "/one/storage/", str(tmp_path / "vol"))
    assert added.returncode == 0, added.stderr
    removed = run_cli(config, "remove", "/two/storage")
    assert removed.returncode == 1 and "no mapping for /two/storage" in removed.stderr
    listing = run_cli(config, "list")
    assert listing.stdout.splitlines() == [f"/one/storage\t{tmp_path / 'vol'}"]


async def test_mappings_are_kept_in_the_database(tmp_path: Path) -> None:
    async with open_services(Config(base_dir=tmp_path)) as services:
        sessions = services.sessions
        await add_mapping(sessions, "/two/storage", "/storage-two")
        await add_mapping(sessions, "/one/storage/", "/storage-one")
        with pytest.raises(Conflict):
            await add_mapping(sessions, "/one/storage", "/elsewhere")
        with pytest.raises(InvalidInput, match="absolute"):
            await add_mapping(sessions, "relative", "/x")
        assert await list_mappings(sessions) == [
            StorageMapping("/one/storage", "/storage-one"),
            StorageMapping("/two/storage", "/storage-two")]
        await remove_mapping(sessions, "/two/storage/")
        with pytest.raises(NotFound):
            await remove_mapping(sessions, "/two/storage")
        assert len(await load_mappings(sessions)) == 1
