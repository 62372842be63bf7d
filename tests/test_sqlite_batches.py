"""The token store's SQLite thread: it binds exactly what SQLAlchemy would have written, and a
database it cannot open fails the jobs of that batch, not the thread."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects import sqlite

from node.index.dicom_models import Base
from node.index.sqlite_batches import RowInserts, SqliteBatches, bind_processor

TABLES = ("viewing_contexts", "context_studies", "audit_events")
COLUMNS = [Base.metadata.tables[t].c[c.name] for t in TABLES
           for c in Base.metadata.tables[t].c]
VALUES: dict[type, list[Any]] = {
    DateTime: [datetime(2026, 11, 28, 6, 41, 10, 123456, tzinfo=UTC),
               datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
               datetime(5, 1, 1, 0, 0, 0),
               datetime(2026, 6, 1, 12, 0, 0, 7, tzinfo=timezone(timedelta(hours=2))),
               None],
    JSON: [{"studyUID": ["1.2.3"], "accNum": None, "flag": True, "n": 3, "x": 1.5},
           [], {}, None, "text", {"nested": {"list": [1, "é", None]}}],
}


@pytest.mark.parametrize("column", [c for c in COLUMNS if isinstance(c.type, (DateTime, JSON))],
                         ids=str)
def test_bound_values_are_sqlalchemys(column: Any) -> None:
    dialect = sqlite.dialect()
    theirs = column.type.dialect_impl(dialect).bind_processor(dialect)
    ours = bind_processor(column)
    assert ours is not None and theirs is not None
    kind = DateTime if isinstance(column.type, DateTime) else JSON
    for value in VALUES[kind]:
        mine, reference = ours(value), theirs(value)
        if kind is JSON and isinstance(reference, str):
            # The same JSON; only the spaces after separators differ.
            assert json.loads(mine) == json.loads(reference)
        else:
            assert mine == reference


async def test_a_database_that_cannot_be_opened_fails_the_job_not_the_thread(
        tmp_path: Path) -> None:
    folder = tmp_path / "not-yet"
    batches: SqliteBatches[int, int] = SqliteBatches(
        str(folder / "db.sqlite"), lambda conn, jobs: [
            conn.execute("SELECT ?", (job,)).fetchone()[0] for job in jobs], name="test")
    try:
        with pytest.raises(sqlite3.OperationalError):
            await batches.submit(1)
        folder.mkdir()
        assert await batches.submit(2) == 2
    finally:
        await batches.close()


def test_rows_are_bound_in_column_order_with_the_key_last(tmp_path: Path) -> None:
    table = Base.metadata.tables["audit_events"]
    inserts = RowInserts(table, ("action", "at", "detail"), key="context_pk")
    at = datetime(2026, 12, 3, 17, 0, 0, 5, tzinfo=UTC)
    row = {"action": "issue", "at": at, "detail": {"studies": ["1.2.3"]}}
    bound = inserts.bind(row, 41)
    assert bound == ["issue", bind_processor(table.c["at"])(at),  # type: ignore[misc]
                     bind_processor(table.c["detail"])(row["detail"]), 41]  # type: ignore[misc]
    assert row == {"action": "issue", "at": at, "detail": {"studies": ["1.2.3"]}}
    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        conn.execute("CREATE TABLE audit_events (action, at, detail, context_pk)")
        inserts.insert(conn, [bound, inserts.bind({**row, "action": "redeem"}, 42)])
        assert conn.execute("SELECT action, context_pk, json_extract(detail, '$.studies[0]') "
                            "FROM audit_events ORDER BY context_pk").fetchall() == [
            ("issue", 41, "1.2.3"), ("redeem", 42, "1.2.3")]


def test_a_key_column_that_needs_a_processor_is_refused() -> None:
    with pytest.raises(ValueError, match="at"):
        RowInserts(Base.metadata.tables["audit_events"], ("action",), key="at")
