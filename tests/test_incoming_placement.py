"""Where incoming files are written when the storage folder is on another file system.

A file is placed in storage by a link, which cannot cross file systems: incoming/ must be on
the storage folder's. Instances sharing that folder (deploy/: one storage, a data_dir each)
each get a folder of their own there, since each recovers at start what is in its own.
"""

from __future__ import annotations

from pathlib import Path

from node.config import config_from_dict
from node.process.runtime import open_services
from node.storage.consistency import compare
from node.storage.folder_storage import SHARED_INCOMING
from tests.factory import StudySpec, make_instance, uid
from tests.rest_support import config_dict
from tests.small_disk import tmpfs


async def test_instances_sharing_a_storage_folder_on_another_disk_keep_apart(
        tmp_path: Path) -> None:
    with tmpfs(tmp_path / "shared", "8m") as root:
        configs = [config_from_dict(config_dict(node={"data_dir": str(tmp_path / name)},
                                                storage={"root": str(root)}),
                                    base_dir=tmp_path) for name in ("a", "b")]
        async with open_services(configs[0]) as first, open_services(configs[1]) as second:
            folders = [first.storage.incoming, second.storage.incoming]
            assert folders[0] != folders[1]
            assert all(f.parent == root / SHARED_INCOMING for f in folders)
            # What one instance has in flight is no stray file to the other's check.
            (folders[1] / "in-flight.dcm").write_bytes(b"half a file")
            source = tmp_path / "one.dcm"
            make_instance(StudySpec(study_uid=uid(9501), rows=8, columns=8), 0, 0).save_as(
                source, enforce_file_format=True)
            result = await first.ingestor.ingest_copy(source, "test")
            assert (root / result.path).is_file()
            report = await compare(first)
            assert report.unindexed == [] and report.missing == []
