"""Which database the tests run the node on, and reading a node's index from a test.

`VIEWNODE_TEST_DB=postgresql` runs the suite on PostgreSQL: every configuration the shared
helpers build gets its own database on the session's private cluster (tests/postgres_peer.py),
one per data folder. Without it (or with `sqlite`) nodes keep the default index.sqlite.

Tests read what a node indexed through `rows`, which speaks SQL to either backend with
SQLAlchemy's sync engines (sqlite3, psycopg), so no test opens index.sqlite by itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, MetaData, create_engine, select, text
from sqlalchemy.pool import NullPool

from node.config import Config

if TYPE_CHECKING:
    from tests.postgres_peer import PostgresCluster

BACKEND = os.environ.get("VIEWNODE_TEST_DB", "sqlite").strip().lower() or "sqlite"
if BACKEND not in ("sqlite", "postgresql"):
    raise RuntimeError(f"VIEWNODE_TEST_DB must be sqlite or postgresql, not {BACKEND!r}")

# The session's cluster while the suite runs on PostgreSQL (set by the conftest fixture).
cluster: PostgresCluster | None = None


_NODE_DEFAULT = Config.database_url


def node_default_url(config: Config) -> str:
    """The URL the node itself derives from `config`, whichever backend the suite runs on."""
    url: str = _NODE_DEFAULT.fget(config)  # type: ignore[attr-defined]
    return url


def on_postgresql() -> bool:
    return BACKEND == "postgresql"


def database_url(data_dir: Path) -> str | None:
    """The [database] url a node with this data folder gets; None: the default (SQLite)."""
    if cluster is None:
        return None
    return cluster.database_for(data_dir)


def database_toml(data_dir: Path) -> str:
    """A [database] table for hand-written node.toml files ("" on SQLite)."""
    url = database_url(data_dir)
    return "" if url is None else f'[database]\nurl = "{url}"\n'


def _sync_url(data_dir: Path) -> str:
    url = database_url(data_dir)
    if url is None:
        return f"sqlite:///{Path(data_dir) / 'index.sqlite'}"
    return url.replace("+asyncpg", "+psycopg", 1)


@contextmanager
def _engine(data_dir: Path) -> Iterator[Engine]:
    engine = create_engine(_sync_url(data_dir), poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def rows(data_dir: Path, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Run one SQL statement (`:name` parameters) on the node's index; its rows."""
    with _engine(data_dir) as engine, engine.begin() as conn:
        result = conn.execute(text(sql), params)
        return [tuple(row) for row in result] if result.returns_rows else []


def dump(data_dir: Path) -> bytes:
    """Everything the index holds, as bytes to search for what must never be stored: on SQLite
    the database files themselves (free pages included), on PostgreSQL every row as text."""
    if cluster is None:
        return b"".join(p.read_bytes() for p in Path(data_dir).glob("index.sqlite*"))
    out: list[str] = []
    with _engine(data_dir) as engine, engine.connect() as conn:
        meta = MetaData()
        meta.reflect(conn)
        for table in meta.sorted_tables:
            out += [repr(tuple(row)) for row in conn.execute(select(table))]
    return "\n".join(out).encode()


@contextmanager
def serving(on: PostgresCluster) -> Iterator[None]:
    """Run every node configuration on `on` while the block runs: configurations without a
    [database] url get their data folder's database there instead of index.sqlite."""
    global cluster
    original = Config.database_url

    def database_url_of(config: Config) -> str:
        return config.database.url or on.database_for(config.data_dir)

    cluster = on
    Config.database_url = property(database_url_of)  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        Config.database_url = original  # type: ignore[method-assign]
        cluster = None
