"""The index writer's study stamp: a study's updated_at says when it last received an
instance, written again once it is STUDY_STAMP_SECONDS old, not on every commit."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from node.config import config_from_dict
from node.index import index_writer
from node.index.dicom_models import Study
from node.index.index_writer import AddOutcome, StoredFile
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
