"""The index writer: a study's updated_at says when it last received an instance, written
again once it is STUDY_STAMP_SECONDS old, not on every commit; each study keeps its sums; a
commit checks the storage quota's ceiling it carries."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from node.config import config_from_dict
from node.index import index_writer
from node.index.dicom_models import Study
from node.index.index_writer import AddOutcome, Ceiling, LimitPassed, StoredFile
from node.ingest.instance_record import InstanceRecord
from node.process.runtime import open_services
from node.services import NodeServices
from tests.rest_support import config_dict
from tests.test_index_concurrency import record


async def stamp(services: NodeServices, study_uid: str) -> datetime:
    async with services.sessions() as session:
        found = await session.scalar(select(Study.updated_at).where(Study.study_uid == study_uid))
    assert found is not None
    return found


async def test_a_study_is_stamped_again_only_once_its_stamp_is_old(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second, third = (record(1, 0, 0, i) for i in range(3))
    async with open_services(config_from_dict(config_dict(), base_dir=tmp_path)) as services:
        async def add(rec: InstanceRecord) -> None:
            outcome, _ = await services.writer.add(StoredFile(rec, f"{rec.sop_uid}.dcm", 1, "t"))
            assert outcome is AddOutcome.ADDED

        monkeypatch.setattr(index_writer, "STUDY_STAMP_SECONDS", 3600.0)
        await add(first)
        stamped = await stamp(services, first.study_uid)
        await add(second)
        assert await stamp(services, first.study_uid) == stamped
        monkeypatch.setattr(index_writer, "STUDY_STAMP_SECONDS", 0.0)
        await add(third)
        assert await stamp(services, first.study_uid) > stamped


async def sizes(services: NodeServices) -> dict[str, tuple[int, int]]:
    """Study UID -> (size_bytes, instance_count) as the writer kept them."""
    async with services.sessions() as session:
        found = await session.execute(select(Study.study_uid, Study.size_bytes,
                                             Study.instance_count))
        return {uid: (size, count) for uid, size, count in found}


async def test_each_study_keeps_the_bytes_and_count_of_its_instances(tmp_path: Path) -> None:
    """Added instances count, a kept duplicate does not, a replaced one counts its new size,
    in the study it now belongs to."""
    raw = config_dict(node={"ae_title": "VIEWNODE", "data_dir": "data",
                            "overwrite_duplicates": True})
    async with open_services(config_from_dict(raw, base_dir=tmp_path)) as services:
        async def add(rec: InstanceRecord, size: int, overwrite: bool = False) -> AddOutcome:
            outcome, _ = await services.writer.add(
                StoredFile(rec, f"{rec.sop_uid}.dcm", size, "t"), overwrite)
            return outcome

        first, second = record(2, 0, 0, 0), record(2, 0, 0, 1)
        other_study = record(2, 1, 0, 0)
        assert await add(first, 100) is AddOutcome.ADDED
        assert await add(second, 50) is AddOutcome.ADDED
        assert await add(other_study, 7) is AddOutcome.ADDED
        assert await add(second, 999) is AddOutcome.DUPLICATE_KEPT
        assert (await sizes(services))[first.study_uid] == (150, 2)
        assert await add(second, 80, overwrite=True) is AddOutcome.DUPLICATE_REPLACED
        assert (await sizes(services))[first.study_uid] == (180, 2)
        moved = dataclasses.replace(other_study, sop_uid=first.sop_uid)
        assert await add(moved, 10, overwrite=True) is AddOutcome.DUPLICATE_REPLACED
        found = await sizes(services)
        assert found[first.study_uid] == (80, 1)
        assert found[other_study.study_uid] == (17, 2)


async def test_a_commit_that_would_pass_its_ceiling_commits_nothing(tmp_path: Path) -> None:
    """The storage quota's check in the commit itself (index_writer.Ceiling): past the
    ceiling nothing of the record stays, not even the new study's rows; at it, it commits."""
    async with open_services(config_from_dict(config_dict(), base_dir=tmp_path)) as services:
        def add(rec: InstanceRecord, size: int, ceiling: Ceiling | None) -> AddOutcome:
            outcome, _ = services.writer.add_blocking(
                StoredFile(rec, f"{rec.sop_uid}.dcm", size, "t"), False, 30.0, ceiling)
            return outcome

        first, second, other_study = record(3, 0, 0, 0), record(3, 0, 0, 1), record(3, 1, 0, 0)
        assert await asyncio.to_thread(add, first, 100, Ceiling(150, 0)) is AddOutcome.ADDED
        with pytest.raises(LimitPassed):
            await asyncio.to_thread(add, second, 60, Ceiling(150, 0))
        with pytest.raises(LimitPassed):
            await asyncio.to_thread(add, other_study, 1, Ceiling(0, 1))
        assert await sizes(services) == {first.study_uid: (100, 1)}
        assert await asyncio.to_thread(add, second, 50, Ceiling(150, 0)) is AddOutcome.ADDED
        assert await asyncio.to_thread(add, other_study, 1, None) is AddOutcome.ADDED
        assert await sizes(services) == {first.study_uid: (150, 2), other_study.study_uid: (1, 1)}
