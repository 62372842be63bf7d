"""GET /healthz and GET /readyz on a serving node: no key, and readiness failing for real
conditions (the index gone, the storage folder unusable), naming the part."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import index_db
from tests.peers import NodeProcess


def probe(node: NodeProcess, route: str) -> tuple[int, dict[str, Any]]:
    """GET without any Authorization header: the status and the JSON body."""
    try:
        with urllib.request.urlopen(f"{node.http_url}{route}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("health") / "node",
                          extra={"node": {"workers": 1}}).start()
    yield process
    process.stop()


def test_healthz_answers_without_a_key_and_without_detail(node: NodeProcess) -> None:
    assert probe(node, "/healthz") == (200, {"status": "alive"})


def test_readyz_answers_ready_without_a_key(node: NodeProcess) -> None:
    assert probe(node, "/readyz") == (200, {"status": "ready"})


def test_readyz_names_storage_while_the_storage_folder_is_a_file(node: NodeProcess) -> None:
    root = node.data_dir / "storage"
    moved = node.data_dir / "storage.moved"
    root.rename(moved)
    try:
        root.write_bytes(b"not a folder")
        status, body = probe(node, "/readyz")
        assert status == 503
        assert body["failing"] == ["storage"]
        assert "storage" in body["error"]
    finally:
        root.unlink(missing_ok=True)
        moved.rename(root)
    assert probe(node, "/readyz")[0] == 200  # checked again on every probe


@pytest.mark.skipif(index_db.on_postgresql(), reason="the SQLite index file")
def test_readyz_names_database_while_the_index_file_is_gone(node: NodeProcess) -> None:
    index = node.data_dir / "index.sqlite"
    moved = node.data_dir / "index.sqlite.moved"
    index.rename(moved)
    try:
        status, body = probe(node, "/readyz")
        assert status == 503
        assert body["failing"] == ["database"]
    finally:
        moved.rename(index)
    assert probe(node, "/readyz")[0] == 200


@pytest.mark.skipif(not index_db.on_postgresql(), reason="a PostgreSQL database dropped")
def test_readyz_names_database_once_the_database_is_dropped(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", extra={"node": {"workers": 1}}).start()
    try:
        assert probe(node, "/readyz")[0] == 200
        url = index_db.database_url(node.data_dir)
        assert url is not None and index_db.cluster is not None
        name = url.rsplit("/", 1)[1]
        with index_db.cluster.connect() as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        status, body = probe(node, "/readyz")
        assert status == 503
        assert body["failing"] == ["database"]
        assert probe(node, "/healthz")[0] == 200  # alive all the same
    finally:
        node.kill()
        shutil.rmtree(tmp_path / "node", ignore_errors=True)
