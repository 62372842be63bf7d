"""Two instances of the node on one database and one storage folder share one storage quota:
together they hold it within an instance's size, never both delete the same study, and the
bytes they count are the bytes stored. On PostgreSQL in the PostgreSQL pass, on one SQLite
file in the SQLite pass."""

from __future__ import annotations

import collections
import json
from pathlib import Path

from tests import index_db
from tests.factory import make_instance
from tests.index_db import rows
from tests.peers import NodeProcess
from tests.test_quota import (
    FAST_JOBS,
    PER_STUDY,
    highest_while,
    poll,
    send_under_load,
    spec,
)


def shared_database(folder: Path) -> str:
    url = index_db.database_url(folder)
    return url if url is not None else f"sqlite+aiosqlite:///{folder / 'index.sqlite'}"


def stored_bytes(shared: Path) -> int:
    return int(rows(shared, "SELECT coalesce(sum(size_bytes), 0) FROM studies")[0][0])


def test_two_instances_fill_one_quota_without_deleting_or_counting_anything_twice(
        tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    instance = len(make_instance(spec(100), 0, 0).PixelData) + 2048  # above any header
    limit = 30 * instance
    nodes = [NodeProcess(tmp_path / name, ae_title=name.upper(), extra={
        "node": {"workers": 1}, "jobs": FAST_JOBS,
        "database": {"url": shared_database(shared)},
        "storage": {"max_bytes": limit, "root": str(shared / "storage")}})
        for name in ("nodea", "nodeb")]
    nodes[0].start()  # the first creates the schema
    nodes[1].start()
    try:
        statuses, highest = highest_while(
            lambda: send_under_load(nodes[0], studies=4, also=nodes[1]),
            lambda: stored_bytes(shared))
        assert statuses == [0] * 4 * 4 * PER_STUDY
        [(largest,)] = rows(shared, "SELECT max(size) FROM instances")
        print(f"highest {highest} limit {limit} largest instance {largest}")
        assert highest <= limit + largest, (highest, limit, largest)

        recycled = [json.loads(d) if isinstance(d, str) else d for (d,) in rows(
            shared, "SELECT detail FROM audit_events WHERE action = 'delete'")]
        assert recycled, "nothing was recycled"
        times = collections.Counter(d["studyUID"] for d in recycled)
        assert max(times.values()) == 1, times  # no study deleted twice
        poll(lambda: rows(shared, "SELECT count(*) FROM jobs WHERE kind = 'delete' AND "
                          "state <> 'done'") == [(0,)])
        # What the index counts is what the storage holds, file for file.
        on_disk = {str(p.relative_to(shared / "storage")): p.stat().st_size
                   for p in (shared / "storage").rglob("*.dcm") if not p.name.startswith(".")}
        indexed = dict(rows(shared, "SELECT path, size FROM instances"))
        assert on_disk == indexed
        assert stored_bytes(shared) == sum(indexed.values()) <= limit
        for node in nodes:
            checked = node.cli("check")
            assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        for node in nodes:
            node.stop()
