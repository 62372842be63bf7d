"""The S3 storage backend in-process, against moto's S3 server: what ingest puts in the bucket,
duplicates, a failed upload, the read cache, recovery and `check` over the bucket listing.

The DICOM and HTTP doors over the same backend are in tests/test_s3_node.py.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from pydicom import dcmread
from sqlalchemy import select
from wsidicom import WsiDicom

from node.config import config_from_dict
from node.errors import ConfigError
from node.index.dicom_models import Instance
from node.index.index_writer import AddOutcome
from node.ingest.ingestor import recover_incoming
from node.process.runtime import open_services
from node.services import NodeServices
from node.storage.consistency import compare, repair
from node.storage.read_cache import FileCache
from node.storage.s3_storage import S3Storage
from tests import slide_factory
from tests.cloud_peers import ServerProcess, moto, s3_client
from tests.factory import StudySpec, changed_copy, uid, write_study
from tests.index_db import database_url
from tests.rest_support import running_app

__all__ = ["moto"]  # the session fixture, used by name

REGION = "eu-central-1"
PREFIX = "hospital/node1/"


def new_bucket(moto: ServerProcess) -> str:
    name = f"viewnode-{uuid.uuid4().hex[:12]}"
    s3_client(moto.url, REGION).create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


def write_credentials(data_dir: Path, mode: int = 0o600) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "s3_credentials"
    path.write_text('{"access_key_id": "test", "secret_access_key": "test"}')
    path.chmod(mode)


def s3_config(folder: Path, moto: ServerProcess, bucket: str, **storage: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "node": {"data_dir": "data"},
        "storage": {"backend": "s3", "bucket": bucket, "prefix": PREFIX,
                    "endpoint_url": moto.url, "region": REGION,
                    "credentials_file": "s3_credentials", "fsync": False, **storage},
    }
    url = database_url(folder / "data")
    if url is not None:
        raw["database"] = {"url": url}
    return raw


@asynccontextmanager
async def s3_services(folder: Path, moto: ServerProcess, bucket: str,
                      overwrite: bool = False, **storage: Any) -> AsyncIterator[NodeServices]:
    raw = s3_config(folder, moto, bucket, **storage)
    raw["node"]["overwrite_duplicates"] = overwrite
    write_credentials(folder / "data")
    async with open_services(config_from_dict(raw, base_dir=folder)) as services:
        yield services


def objects(moto: ServerProcess, bucket: str) -> dict[str, bytes]:
    client = s3_client(moto.url, REGION)
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for o in listed}


async def instance_rows(services: NodeServices) -> dict[str, tuple[str, int]]:
    async with services.sessions() as session:
        rows = (await session.execute(select(Instance.sop_uid, Instance.path, Instance.size))).all()
    return {sop: (path, size) for sop, path, size in rows}


@pytest.fixture
def study(tmp_path: Path) -> list[Path]:
    return write_study(tmp_path / "sent", StudySpec(
        study_uid=uid(7701, uuid.uuid4().int % 10**6), patient_id="S3-1", series=1,
        instances_per_series=3, rows=16, columns=16))


def files_below(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


async def test_an_ingested_instance_is_the_object_its_row_names_and_nothing_stays_local(
        tmp_path: Path, moto: ServerProcess, study: list[Path]) -> None:
    bucket = new_bucket(moto)
    async with s3_services(tmp_path / "n", moto, bucket) as services:
        results = [await services.ingestor.ingest_copy(p, "test") for p in study]
        rows = await instance_rows(services)
    assert [r.outcome for r in results] == [AddOutcome.ADDED] * 3
    stored = objects(moto, bucket)
    assert sorted(stored) == sorted(PREFIX + path for path, _ in rows.values())
    for sent in study:
        path, size = rows[dcmread(sent).SOPInstanceUID]
        assert stored[PREFIX + path] == sent.read_bytes()
        assert size == sent.stat().st_size
    data = tmp_path / "n" / "data"
    assert not (data / "storage").exists()
    assert files_below(data / "incoming") == []
    # The uploaded files were kept as cache entries for the readers that usually follow.
    assert sorted(p.relative_to(data / "cache").as_posix() for p in files_below(data / "cache")
                  if ".partial" not in p.parts) == sorted(path for path, _ in rows.values())


async def test_a_resent_instance_leaves_the_stored_object_as_it_was(
        tmp_path: Path, moto: ServerProcess, study: list[Path]) -> None:
    bucket = new_bucket(moto)
    resent = changed_copy(study[0], tmp_path / "resent.dcm", "CHANGED^NAME")
    async with s3_services(tmp_path / "n", moto, bucket) as services:
        await services.ingestor.ingest_copy(study[0], "test")
        again = await services.ingestor.ingest_copy(resent, "test")
        local = await services.storage.local_path_async(again.path)
        assert local.read_bytes() == study[0].read_bytes()
    assert again.outcome is AddOutcome.DUPLICATE_KEPT
    assert list(objects(moto, bucket).values()) == [study[0].read_bytes()]


async def test_with_overwrite_a_resent_instance_replaces_the_object_and_the_cached_copy(
        tmp_path: Path, moto: ServerProcess, study: list[Path]) -> None:
    bucket = new_bucket(moto)
    resent = changed_copy(study[0], tmp_path / "resent.dcm", "LONGER^CHANGED^NAME")
    async with s3_services(tmp_path / "n", moto, bucket, overwrite=True) as services:
        first = await services.ingestor.ingest_copy(study[0], "test")
        assert (await services.storage.local_path_async(first.path)).read_bytes() == \
            study[0].read_bytes()
        again = await services.ingestor.ingest_copy(resent, "test")
        local = await services.storage.local_path_async(again.path)
        assert local.read_bytes() == resent.read_bytes()
        rows = await instance_rows(services)
    assert again.outcome is AddOutcome.DUPLICATE_REPLACED
    assert objects(moto, bucket) == {PREFIX + first.path: resent.read_bytes()}
    assert rows[first.sop_uid] == (first.path, resent.stat().st_size)


async def test_a_failed_upload_fails_the_ingest_and_indexes_nothing(
        tmp_path: Path, moto: ServerProcess, study: list[Path]) -> None:
    bucket = new_bucket(moto)
    async with s3_services(tmp_path / "n", moto, bucket) as services:
        s3_client(moto.url, REGION).delete_bucket(Bucket=bucket)
        with pytest.raises(OSError, match=f"bucket {bucket}: storing .* failed"):
            await services.ingestor.ingest_copy(study[0], "test")
        assert await instance_rows(services) == {}
        assert services.storage.incoming_files() == []


async def test_readers_get_an_evicted_object_downloaded_and_a_missing_one_as_no_file(
        tmp_path: Path, moto: ServerProcess, study: list[Path]) -> None:
    bucket = new_bucket(moto)
    async with s3_services(tmp_path / "n", moto, bucket) as services:
        results = [await services.ingestor.ingest_copy(p, "test") for p in study]
        shutil.rmtree(tmp_path / "n" / "data" / "cache")
        storage = services.storage
        paths = storage.local_paths([r.path for r in results] + ["00/1.2.3/1.2.3.4.dcm"])
        assert [p.read_bytes() for p in paths[:3]] == [p.read_bytes() for p in study]
        assert all(p.is_relative_to(tmp_path / "n" / "data" / "cache") for p in paths)
        assert not paths[3].exists()
        assert (await storage.local_path_async(results[0].path)) == paths[0]


async def test_check_compares_the_index_with_the_bucket_listing_and_repairs(
        tmp_path: Path, moto: ServerProcess, study: list[Path]) -> None:
    bucket = new_bucket(moto)
    client = s3_client(moto.url, REGION)
    async with s3_services(tmp_path / "n", moto, bucket) as services:
        results = [await services.ingestor.ingest_copy(p, "test") for p in study[:2]]
        assert (await compare(services)).consistent
        client.delete_object(Bucket=bucket, Key=PREFIX + results[0].path)
        orphan = services.storage.relative_path(
            str(dcmread(study[2]).StudyInstanceUID), str(dcmread(study[2]).SOPInstanceUID))
        client.put_object(Bucket=bucket, Key=PREFIX + orphan, Body=study[2].read_bytes())
        # Objects outside the node's prefix are not the node's.
        client.put_object(Bucket=bucket, Key="elsewhere/file.dcm", Body=b"x")
        report = await compare(services)
        assert [row.path for row in report.missing] == [results[0].path]
        assert report.unindexed == [orphan]
        assert (report.indexed, report.stored) == (2, 2)
        done = await repair(services, report)
        assert (done.rows_removed, done.files_indexed) == (1, 1)
        assert (await compare(services)).consistent
        assert sorted(await instance_rows(services)) == sorted(
            str(dcmread(p).SOPInstanceUID) for p in study[1:])


async def test_repair_quarantines_a_damaged_object_out_of_the_bucket(
        tmp_path: Path, moto: ServerProcess, study: list[Path]) -> None:
    bucket = new_bucket(moto)
    damaged = study[0].read_bytes()[:-100]
    key = "ab/1.2.3/1.2.3.4.dcm"
    s3_client(moto.url, REGION).put_object(Bucket=bucket, Key=PREFIX + key, Body=damaged)
    async with s3_services(tmp_path / "n", moto, bucket) as services:
        report = await compare(services)
        assert report.unindexed == [key]
        done = await repair(services, report)
        assert [path for path, _ in done.quarantined] == [key]
        assert (await compare(services)).consistent
    assert objects(moto, bucket) == {}
    assert (tmp_path / "n" / "data" / "quarantine" / key).read_bytes() == damaged


async def test_recovery_uploads_a_committed_instance_whose_object_is_missing(
        tmp_path: Path, moto: ServerProcess, study: list[Path]) -> None:
    bucket = new_bucket(moto)
    async with s3_services(tmp_path / "n", moto, bucket) as services:
        result = await services.ingestor.ingest_copy(study[0], "test")
        s3_client(moto.url, REGION).delete_object(Bucket=bucket, Key=PREFIX + result.path)
        shutil.copy(study[0], services.storage.incoming / "left-by-a-crash.dcm")
        assert await recover_incoming(services.storage, services.sessions) == (1, 0)
    assert objects(moto, bucket) == {PREFIX + result.path: study[0].read_bytes()}


async def test_a_bucket_that_cannot_be_used_stops_the_start_naming_it(
        tmp_path: Path, moto: ServerProcess) -> None:
    with pytest.raises(ConfigError, match=r"storage\.bucket: no-such-bucket-here"):
        async with s3_services(tmp_path / "n", moto, "no-such-bucket-here"):
            pass


async def test_a_credentials_file_others_can_read_is_refused(
        tmp_path: Path, moto: ServerProcess) -> None:
    bucket = new_bucket(moto)
    raw = s3_config(tmp_path, moto, bucket)
    write_credentials(tmp_path / "data", mode=0o644)
    with pytest.raises(ConfigError, match=r"storage\.credentials_file: .* owner only") as caught:
        S3Storage.from_config(config_from_dict(raw, base_dir=tmp_path).storage,
                              tmp_path / "data", tmp_path / "incoming", tmp_path / "cache")
    assert "test" not in str(caught.value).replace(str(tmp_path), "")


async def test_a_dicom_slide_is_tiled_from_objects_downloaded_into_the_cache(
        tmp_path: Path, moto: ServerProcess) -> None:
    bucket = new_bucket(moto)
    slide = slide_factory.write_dicom_wsi(tmp_path / "slide", slide_factory.SlideSpec())
    cid = slide_factory.SpecimenSpec().container_identifier
    raw = s3_config(tmp_path / "n", moto, bucket)
    write_credentials(tmp_path / "n" / "data")
    async with running_app(tmp_path / "n",
                           config=config_from_dict(raw, base_dir=tmp_path / "n")) as api:
        for path in slide.paths:
            await api.services.ingestor.ingest_copy(path, "import")
        shutil.rmtree(tmp_path / "n" / "data" / "cache")
        response = await api.get(f"/webdv/slides/{cid}/dz/10/1_2.jpeg")
        assert response.status == 200, await response.text()
        assert await response.read() == WsiDicom.open(slide.paths).read_encoded_tile(0, (1, 2))
    assert len(files_below(tmp_path / "n" / "data" / "cache")) == len(slide.paths)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[FileCache]:
    yield FileCache(tmp_path / "cache", max_bytes=250, fsync=False, keep_seconds=0)


def put(cache: FileCache, name: str, size: int = 100) -> Path:
    def write(out: BinaryIO) -> None:
        out.write(b"x" * size)

    return cache.fill(name, write)


def test_the_cache_evicts_the_least_recently_used_files_beyond_its_bound(
        cache: FileCache) -> None:
    first, second = put(cache, "a/1.dcm"), put(cache, "a/2.dcm")
    assert cache.get("a/1.dcm") == first  # now the most recently used
    put(cache, "b/3.dcm")
    assert not second.exists() and first.exists()
    assert cache.get("a/2.dcm") is None
    assert cache.total_bytes == 200


def test_the_cache_keeps_files_in_use_over_its_bound(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "cache", max_bytes=250, fsync=False, keep_seconds=600)
    paths = [put(cache, f"{i}.dcm") for i in range(4)]
    assert all(p.exists() for p in paths)
    assert cache.total_bytes == 400


def test_the_cache_takes_over_an_earlier_runs_files_and_drops_abandoned_partial_ones(
        tmp_path: Path) -> None:
    put(FileCache(tmp_path / "cache", max_bytes=1000, fsync=False), "a/1.dcm")
    partial = tmp_path / "cache" / ".partial"
    (partial / "abandoned").write_bytes(b"half")
    long_ago = time.time() - 2 * 3600
    os.utime(partial / "abandoned", (long_ago, long_ago))
    (partial / "in-progress").write_bytes(b"half")  # another process's download
    again = FileCache(tmp_path / "cache", max_bytes=1000, fsync=False)
    assert again.get("a/1.dcm") == tmp_path / "cache" / "a" / "1.dcm"
    assert again.total_bytes == 100
    assert os.listdir(partial) == ["in-progress"]


def test_files_another_process_used_lately_are_not_evicted_by_a_new_cache(
        tmp_path: Path) -> None:
    first = FileCache(tmp_path / "cache", max_bytes=1000, fsync=False)
    old, recent = put(first, "old.dcm"), put(first, "recent.dcm")
    long_ago = time.time() - 3600
    os.utime(old, (long_ago, long_ago))
    second = FileCache(tmp_path / "cache", max_bytes=150, fsync=False, keep_seconds=300)
    assert old.exists()  # nothing is walked or evicted before the cache is used
    assert second.total_bytes == 100
    assert not old.exists() and recent.exists()
