"""The ingest path over a storage folder: each file gets its storage name as a hard link before
its index commit. What a crash or a failure at each step leaves, and what recovery and `check`
make of it; duplicates and a filesystem without hard links.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from sqlalchemy import func, select

from node.config import config_from_dict
from node.index.dicom_models import Instance
from node.index.index_writer import AddOutcome
from node.ingest.ingestor import Incoming, IngestResult, recover_incoming
from node.process.runtime import open_services
from node.services import NodeServices
from node.storage.consistency import compare
from tests.factory import StudySpec, changed_copy, uid, write_study
from tests.index_db import database_url


@asynccontextmanager
async def folder_services(folder: Path, overwrite: bool = False) -> AsyncIterator[NodeServices]:
    raw: dict[str, Any] = {"node": {"data_dir": "data", "overwrite_duplicates": overwrite}}
    url = database_url(folder / "data")
    if url is not None:
        raw["database"] = {"url": url}
    async with open_services(config_from_dict(raw, base_dir=folder)) as services:
        yield services


@pytest.fixture
def study(tmp_path: Path) -> list[Path]:
    return write_study(tmp_path / "sent", StudySpec(
        study_uid=uid(7801, uuid.uuid4().int % 10**6), patient_id="LINK-1", series=1,
        instances_per_series=2, rows=16, columns=16))


def storage_files(services: NodeServices) -> list[str]:
    return [relative for relative, _size in services.storage.listing()]


def incoming_files(services: NodeServices) -> list[Path]:
    return services.storage.incoming_files()


async def indexed(services: NodeServices) -> int:
    async with services.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(Instance))).scalar_one())


def a_crash_copy_name(services: NodeServices) -> Path:
    return services.storage.incoming / f"left-by-a-crash-{uuid.uuid4().hex}.dcm"


def a_crash_copy(services: NodeServices, source: Path) -> Path:
    """A file in incoming/ as the receive leaves it."""
    incoming = a_crash_copy_name(services)
    shutil.copy(source, incoming)
    return incoming


def storage_name(services: NodeServices, source: Path) -> str:
    ds = dcmread(source, stop_before_pixels=True)
    return services.storage.relative_path(ds.StudyInstanceUID, ds.SOPInstanceUID)


async def test_a_stored_file_has_one_name_and_incoming_is_empty(
        tmp_path: Path, study: list[Path]) -> None:
    async with folder_services(tmp_path / "n") as services:
        results = [await services.ingestor.ingest_copy(path, "test") for path in study]
        assert [r.outcome for r in results] == [AddOutcome.ADDED] * len(study)
        for result, source in zip(results, study, strict=True):
            stored = services.storage.local_path(result.path)
            assert stored.read_bytes() == source.read_bytes()
            assert stored.stat().st_nlink == 1
        assert incoming_files(services) == []
        assert (await compare(services)).consistent


async def test_a_crash_before_the_commit_leaves_nothing_after_recovery(
        tmp_path: Path, study: list[Path]) -> None:
    async with folder_services(tmp_path / "n") as services:
        incoming = a_crash_copy(services, study[0])
        relative = storage_name(services, study[0])
        assert services.storage.publish(incoming, relative, replace=False)
        assert storage_files(services) == [relative]

        assert await recover_incoming(services.storage, services.sessions) == (0, 1)
        assert storage_files(services) == []
        assert incoming_files(services) == []
        assert (await compare(services)).consistent


async def test_recovery_keeps_a_stored_file_that_is_not_the_crashed_one(
        tmp_path: Path, study: list[Path]) -> None:
    """A resend of an instance stored already, cut off before its commit: its link was never
    made (the name was taken), and the stored file must survive recovery."""
    async with folder_services(tmp_path / "n") as services:
        result = await services.ingestor.ingest_copy(study[0], "test")
        incoming = a_crash_copy(services, study[0])
        assert not services.storage.publish(incoming, result.path, replace=False)

        assert await recover_incoming(services.storage, services.sessions) == (0, 1)
        assert services.storage.local_path(result.path).read_bytes() == study[0].read_bytes()
        assert incoming_files(services) == []
        assert (await compare(services)).consistent


async def test_a_crash_after_the_commit_keeps_the_file_the_row_names(
        tmp_path: Path, study: list[Path]) -> None:
    async with folder_services(tmp_path / "n") as services:
        result = await services.ingestor.ingest_copy(study[0], "test")
        # the incoming name, not yet removed when the process died
        os.link(services.storage.local_path(result.path), a_crash_copy_name(services))

        await recover_incoming(services.storage, services.sessions)
        stored = services.storage.local_path(result.path)
        assert stored.read_bytes() == study[0].read_bytes()
        assert stored.stat().st_nlink == 1
        assert incoming_files(services) == []
        assert (await compare(services)).consistent


async def test_a_failed_commit_takes_its_link_back(
        tmp_path: Path, study: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    async with folder_services(tmp_path / "n") as services:
        def failing_commit(*_args: Any) -> Any:
            raise OSError("disk I/O error")

        monkeypatch.setattr(services.ingestor.writer, "add_many_blocking", failing_commit)
        with pytest.raises(OSError, match="disk I/O error"):
            await services.ingestor.ingest_copy(study[0], "test")
        assert storage_files(services) == []
        assert incoming_files(services) == []
        assert await indexed(services) == 0


async def test_a_kept_duplicate_keeps_the_stored_bytes(
        tmp_path: Path, study: list[Path]) -> None:
    async with folder_services(tmp_path / "n") as services:
        first = await services.ingestor.ingest_copy(study[0], "test")
        changed = changed_copy(study[0], tmp_path / "changed.dcm", "CHANGED^NAME")
        second = await services.ingestor.ingest_copy(changed, "test")
        assert second.outcome is AddOutcome.DUPLICATE_KEPT
        assert services.storage.local_path(first.path).read_bytes() == study[0].read_bytes()
        assert storage_files(services) == [first.path]
        assert incoming_files(services) == []


async def test_a_replaced_duplicate_is_renamed_over_the_stored_file(
        tmp_path: Path, study: list[Path]) -> None:
    async with folder_services(tmp_path / "n", overwrite=True) as services:
        first = await services.ingestor.ingest_copy(study[0], "test")
        changed = changed_copy(study[0], tmp_path / "changed.dcm", "CHANGED^NAME")
        second = await services.ingestor.ingest_copy(changed, "test")
        assert second.outcome is AddOutcome.DUPLICATE_REPLACED
        stored = services.storage.local_path(first.path)
        assert stored.read_bytes() == changed.read_bytes()
        assert stored.stat().st_nlink == 1
        assert storage_files(services) == [first.path]
        assert incoming_files(services) == []


async def test_without_hard_links_the_file_is_renamed_after_the_commit(
        tmp_path: Path, study: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(*_args: Any, **_kwargs: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    async with folder_services(tmp_path / "n") as services:
        results = [await services.ingestor.ingest_copy(path, "test") for path in study]
        assert [r.outcome for r in results] == [AddOutcome.ADDED] * len(study)
        assert sorted(storage_files(services)) == sorted(r.path for r in results)
        assert incoming_files(services) == []
        assert (await compare(services)).consistent


@pytest.mark.parametrize("failing", ["flush_path", "flush_published"])
async def test_a_failed_fsync_fails_the_ingest_and_keeps_what_the_row_names(
        tmp_path: Path, study: list[Path], monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    """The commit ran beside the fsync and landed: the sender gets the error and sends again,
    and the file the row names is there (a duplicate then)."""
    async with folder_services(tmp_path / "n") as services:
        def disk_error(_target: object) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(services.storage, failing, disk_error)
        with pytest.raises(OSError, match="Input/output error"):
            await services.ingestor.ingest_copy(study[0], "test")
        monkeypatch.undo()
        assert await indexed(services) == 1
        assert incoming_files(services) == []
        assert (await compare(services)).consistent
        again = await services.ingestor.ingest_copy(study[0], "test")
        assert again.outcome is AddOutcome.DUPLICATE_KEPT
        assert services.storage.local_path(again.path).read_bytes() == study[0].read_bytes()


async def test_a_batch_answers_each_file_alone(tmp_path: Path, study: list[Path]) -> None:
    """A STOW-RS request's parts go through the ingest path together: a file that is not
    DICOM, a kept duplicate and an instance of another patient's study each get their own
    answer, and the others are stored as if they had come alone."""
    other = write_study(tmp_path / "other", StudySpec(
        study_uid=dcmread(study[0], stop_before_pixels=True).StudyInstanceUID,
        patient_id="LINK-2", series=1, instances_per_series=1, rows=16, columns=16))
    not_dicom = tmp_path / "not.dcm"
    not_dicom.write_bytes(b"not a DICOM file at all" * 10)
    async with folder_services(tmp_path / "n") as services:
        sent = [study[0], not_dicom, study[1], study[0], other[0]]
        files = [Incoming(services.storage.copy_to_incoming(path)) for path in sent]
        results = await asyncio.to_thread(services.ingestor.ingest_batch_blocking, files,
                                          "test")
        assert [type(r).__name__ for r in results] == [
            "IngestResult", "InvalidInput", "IngestResult", "IngestResult",
            "OtherPatientsStudy"]
        first, _, second, again, _ = results
        assert isinstance(first, IngestResult) and isinstance(second, IngestResult)
        assert isinstance(again, IngestResult)
        assert [first.outcome, second.outcome, again.outcome] == [
            AddOutcome.ADDED, AddOutcome.ADDED, AddOutcome.DUPLICATE_KEPT]
        assert sorted(storage_files(services)) == sorted([first.path, second.path])
        assert incoming_files(services) == []
        assert await indexed(services) == 2
        assert (await compare(services)).consistent


async def test_a_failed_fsync_in_a_batch_fails_that_file_alone(
        tmp_path: Path, study: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    async with folder_services(tmp_path / "n") as services:
        files = [Incoming(services.storage.copy_to_incoming(path)) for path in study]
        flush_path = services.storage.flush_path

        def disk_error(target: Path) -> None:
            if target == files[0].path:
                raise OSError(5, "Input/output error")
            flush_path(target)

        monkeypatch.setattr(services.storage, "flush_path", disk_error)
        failed, stored = await asyncio.to_thread(services.ingestor.ingest_batch_blocking,
                                                 files, "test")
        assert isinstance(failed, OSError) and isinstance(stored, IngestResult)
        assert stored.outcome is AddOutcome.ADDED
        # The failed one's row landed beside the fsync: its file is there, the sender sends
        # it again and it is a duplicate then.
        assert await indexed(services) == 2
        assert incoming_files(services) == []
        assert (await compare(services)).consistent
