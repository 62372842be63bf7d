"""Schema migrations on both backends: a new database gets exactly the models' schema, an older
one made by create_all is taken over, and instances starting at once migrate once."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, MetaData, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

import pathology.pathology_models as pathology_models
from node.index import migrate
from node.index.context_queries import waiting_update
from node.index.database import create_engine, create_schema
from node.index.dicom_models import Base
from tests.peers import REPO
from tests.postgres_peer import PostgresCluster

MIGRATE_IN_A_PROCESS = """
import asyncio, sys
from node.index.database import create_engine
from tests.test_migrations import migrate_everything

async def main() -> None:
    engine = create_engine(sys.argv[1])
    await migrate_everything(engine)
    await engine.dispose()

asyncio.run(main())
"""
HEADS = {"alembic_version": "0009_retrieval_progress",
         "alembic_version_pathology": "p0001_pathology"}


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'index.sqlite'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = cluster.create_database(f"migrations_{tmp_path.name}".lower()[:60])
    engine = create_engine(url)
    yield engine
    await engine.dispose()


async def migrate_everything(engine: AsyncEngine) -> None:
    await create_schema(engine)
    await pathology_models.ensure_schema(engine)


def differences(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    diffs = compare_metadata(context, Base.metadata)
    # The version tables are Alembic's, not the models'.
    return [d for d in diffs
            if not (d[0] == "remove_table" and d[1].name.startswith("alembic_version"))]


async def versions(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as conn:
        return {table: (await conn.execute(text(f"SELECT version_num FROM {table}"))).scalar_one()
                for table in HEADS}


async def test_a_new_database_gets_exactly_the_models_schema(engine: AsyncEngine) -> None:
    await migrate_everything(engine)
    async with engine.connect() as conn:
        assert await conn.run_sync(differences) == []
    assert await versions(engine) == HEADS


async def test_migrating_again_changes_nothing(engine: AsyncEngine) -> None:
    await migrate_everything(engine)
    await migrate_everything(engine)
    assert await versions(engine) == HEADS


async def test_a_database_made_by_create_all_is_taken_over(engine: AsyncEngine) -> None:
    # Tables of revision 0002 on were never made by create_all.
    later = ("jobs", "import_outcomes", "sealed_credentials")
    before_jobs = [t for t in Base.metadata.sorted_tables if t.name not in later]
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all, tables=before_jobs)
        await conn.execute(text("INSERT INTO settings (key, value) VALUES ('kept', 'yes')"))
    await migrate_everything(engine)
    async with engine.connect() as conn:
        assert await conn.run_sync(differences) == []
        kept = await conn.execute(text("SELECT value FROM settings WHERE key = 'kept'"))
        assert kept.scalar_one() == "yes"
    assert await versions(engine) == HEADS


async def test_instances_starting_together_migrate_once(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("one SQLite file is one instance's")
    url = engine.url.render_as_string(hide_password=False)
    processes = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", MIGRATE_IN_A_PROCESS, url, cwd=REPO) for _ in range(4)]
    assert [await p.wait() for p in processes] == [0, 0, 0, 0]
    async with engine.connect() as conn:
        assert await conn.run_sync(differences) == []
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    assert set(tables) >= {t.name for t in Base.metadata.sorted_tables}
    assert await versions(engine) == HEADS


async def test_the_retrievals_update_finds_waiting_studies_through_the_partial_index(
        engine: AsyncEngine) -> None:
    """Context studies are indexed by UID only while they wait (migration 0004); the update
    must say so for the database to use that index."""
    await migrate_everything(engine)
    statement = waiting_update("1.2.3", ("pending",)).values(state="available")
    sql = str(statement.compile(engine.sync_engine, compile_kwargs={"literal_binds": True}))
    async with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            plan = " ".join(str(row[-1]) for row in await conn.execute(
                text(f"EXPLAIN QUERY PLAN {sql}")))
        else:  # an empty table: forbid the sequential scan to see whether the index is usable
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(row[0] for row in await conn.execute(text(f"EXPLAIN {sql}")))
    assert "ix_context_studies_waiting" in plan, plan


def test_the_models_cover_every_table_the_revisions_create() -> None:
    meta = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(meta)
    assert set(pathology_models.TABLE_NAMES) <= set(meta.tables)


async def test_patients_merged_by_an_empty_patient_id_are_split(engine: AsyncEngine) -> None:
    """Before 0005 every study without PatientID joined one patient row; after it each such
    study is its own patient, with no demographics borrowed from another study's instance."""
    await migrate.upgrade(engine, revision="0004_waiting_studies_index")
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO patients (patient_id, issuer, name, name_search, birth_date, sex,"
            " charset) VALUES ('', '', 'FIRST^SENDER', 'FIRST^SENDER', '19500101', 'F', ''),"
            " ('', 'HOSP', 'ONLY^ONE', 'ONLY^ONE', '19600101', 'M', ''),"
            " ('PID', '', 'KEPT^AS^IS', 'KEPT^AS^IS', '', '', '')"))
        for study_uid, name in (("1.1", "FIRST^SENDER"), ("1.2", "FIRST^SENDER"),
                                ("2.1", "ONLY^ONE"), ("3.1", "KEPT^AS^IS"), ("3.2", "KEPT^AS^IS")):
            await conn.execute(text(
                "INSERT INTO studies (patient_pk, study_uid, study_date, study_time,"
                " accession_number, study_id, description, referring_physician, charset,"
                " updated_at) SELECT id, :uid, '', '', '', '', '', '', '', CURRENT_TIMESTAMP"
                " FROM patients WHERE name = :name"), {"uid": study_uid, "name": name})
    await migrate_everything(engine)
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT s.study_uid, p.id, p.patient_id, p.issuer, p.study_anchor, p.name"
            " FROM studies s JOIN patients p ON s.patient_pk = p.id ORDER BY s.study_uid"))).all()
        assert await conn.run_sync(differences) == []
    by_study = {row[0]: row[1:] for row in rows}
    assert len({by_study[uid][0] for uid in ("1.1", "1.2", "2.1")}) == 3
    assert by_study["1.1"][1:] == ("", "", "1.1", "")
    assert by_study["1.2"][1:] == ("", "", "1.2", "")
    assert by_study["2.1"][1:] == ("", "HOSP", "2.1", "ONLY^ONE")
    assert by_study["3.1"] == by_study["3.2"]
    assert by_study["3.1"][1:] == ("PID", "", "", "KEPT^AS^IS")


async def test_studies_get_the_sizes_and_counts_of_the_instances_they_hold(
        engine: AsyncEngine) -> None:
    """0006 counts each existing study once; from then on the index writer keeps the sums."""
    await migrate.upgrade(engine, revision="0005_patient_study_anchor")
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO patients (patient_id, issuer, study_anchor, name, name_search,"
            " birth_date, sex, charset) VALUES ('P', '', '', '', '', '', '', '')"))
        for study_uid in ("1.1", "1.2"):
            await conn.execute(text(
                "INSERT INTO studies (patient_pk, study_uid, study_date, study_time,"
                " accession_number, study_id, description, referring_physician, charset,"
                " updated_at) SELECT id, :uid, '', '', '', '', '', '', '', CURRENT_TIMESTAMP"
                " FROM patients"), {"uid": study_uid})
        for series_uid, study_uid in (("1.1.1", "1.1"), ("1.1.2", "1.1")):
            await conn.execute(text(
                "INSERT INTO series (study_pk, series_uid, modality, series_number,"
                " description, body_part) SELECT id, :uid, '', '', '', '' FROM studies"
                " WHERE study_uid = :study"), {"uid": series_uid, "study": study_uid})
        for sop_uid, series_uid, size in (("1", "1.1.1", 100), ("2", "1.1.1", 20),
                                          ("3", "1.1.2", 3)):
            await conn.execute(text(
                "INSERT INTO instances (series_pk, sop_uid, sop_class_uid, instance_number,"
                " number_of_frames, container_identifier, path, size, transfer_syntax, charset,"
                " received_at, origin) SELECT id, :sop, '', '', 1, '', :path, :size, '', '',"
                " CURRENT_TIMESTAMP, '' FROM series WHERE series_uid = :series"),
                {"sop": sop_uid, "path": sop_uid, "series": series_uid, "size": size})
    await migrate_everything(engine)
    async with engine.connect() as conn:
        found = {uid: (size, count) for uid, size, count in (await conn.execute(text(
            "SELECT study_uid, size_bytes, instance_count FROM studies"))).all()}
        assert await conn.run_sync(differences) == []
    assert found == {"1.1": (123, 3), "1.2": (0, 0)}
