"""Two index writers (two instances) on one PostgreSQL database, fed the same instances at the
same moment in different orders: every instance is indexed once, every patient, study and
series once, and each writer's caller is told the truth (added, or a duplicate kept)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from node.config import config_from_dict
from node.index.dicom_models import Instance, Patient, Series, Study
from node.index.index_writer import AddOutcome, StoredFile
from node.ingest.instance_record import InstanceRecord
from node.process.runtime import open_services
from node.services import NodeServices
from tests import index_db
from tests.factory import uid
from tests.postgres_peer import PostgresCluster
from tests.rest_support import config_dict

pytestmark = pytest.mark.skipif(index_db.on_postgresql(),
                                reason="runs on PostgreSQL in the SQLite pass already")

PATIENTS, STUDIES_PER_PATIENT, SERIES_PER_STUDY, PER_SERIES = 4, 3, 3, 15


def record(p: int, s: int, r: int, i: int) -> InstanceRecord:
    return InstanceRecord(
        patient_id=f"RACE-{p}", issuer="", patient_name=f"RACE^{p}", birth_date="19700101",
        sex="O", study_uid=uid(8000 + p * 10 + s), study_date="20240101", study_time="",
        accession_number="", study_id="", study_description="", referring_physician="",
        series_uid=uid(80000 + p * 100 + s * 10 + r), modality="OT", series_number=str(r),
        series_description="", body_part="", sop_uid=uid(800000 + p * 1000 + s * 100 + r * 20 + i),
        sop_class_uid="1.2.840.10008.5.1.4.1.1.7", instance_number=str(i), number_of_frames=1,
        container_identifier="", transfer_syntax="1.2.840.10008.1.2.1", charset="")


@pytest.fixture
async def instances(tmp_path: Path, postgres: PostgresCluster
                    ) -> AsyncIterator[list[NodeServices]]:
    url = postgres.create_database(f"race_{tmp_path.name}".lower()[:60])
    configs = [config_from_dict(config_dict(database={"url": url}), base_dir=tmp_path / name)
               for name in ("a", "b")]
    async with open_services(configs[0]) as first, open_services(configs[1]) as second:
        yield [first, second]


async def test_the_same_instances_indexed_by_two_writers_at_once_are_indexed_once(
        instances: list[NodeServices]) -> None:
    records = [record(p, s, r, i) for p in range(PATIENTS) for s in range(STUDIES_PER_PATIENT)
               for r in range(SERIES_PER_STUDY) for i in range(PER_SERIES)]
    orders = [list(records), list(reversed(records))]
    random.Random(7).shuffle(orders[1])
    submitted = [[w.writer.submit(StoredFile(rec, f"{rec.sop_uid}.dcm", 1, "race"))
                  for rec in order] for w, order in zip(instances, orders, strict=True)]
    outcomes = [await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
                for futures in submitted]
    added = [sum(o is AddOutcome.ADDED for o, _ in got) for got in outcomes]
    assert sum(added) == len(records)
    assert all(o in (AddOutcome.ADDED, AddOutcome.DUPLICATE_KEPT)
               for got in outcomes for o, _ in got)
    async with instances[0].sessions() as session:
        counts = [await session.scalar(select(func.count()).select_from(model))
                  for model in (Patient, Study, Series, Instance)]
    studies = PATIENTS * STUDIES_PER_PATIENT
    assert counts == [PATIENTS, studies, studies * SERIES_PER_STUDY, len(records)]
