"""Session-scoped peers: each is started once per test session, on loopback.

The session's topology: `orthanc` (a PACS and source node), `storescp` (a C-MOVE destination),
and `node` (this project, serving), configured to know each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import index_db
from tests.fast_path import receive_in
from tests.peers import NodeProcess, OrthancProcess, StoreSCP, free_port
from tests.postgres_peer import PostgresCluster

# Test modules whose outcome does not depend on the SQL dialect the pass runs the index on:
# units that touch no database (or only one of their own), nodes whose index does nothing but
# start, browser tests whose every query is one the HTTP tests already run on PostgreSQL, and
# tests that run on both databases themselves. `--dialect-only` (the PostgreSQL pass of
# `manage.sh test`) leaves them out, shown as deselected, so that the second pass spends its
# time where the dialect matters; so are single tests marked `dialect_neutral`.
DIALECT_NEUTRAL = frozenset({
    # browsers (Chromium)
    "test_ohif_browser.py", "test_ohif_static.py", "test_ohif_measurements.py",
    "test_ohif_node_controls.py", "test_viewer_slides.py",
    # units without a database
    "test_layout.py", "test_log_privacy.py", "test_header_scan.py", "test_token_secrets.py",
    "test_dimse_command_reader.py", "test_dimse_speedups.py", "test_dimse_wire.py",
    "test_find_identifiers.py", "test_pdu_read_ahead.py", "test_flush_threads.py",
    "test_pathology_colour.py", "test_pathology_readers.py", "test_deploy_files.py",
    "test_config.py", "test_dicom_reactor.py", "test_store_direct.py", "test_store_receive.py",
    "test_sources_request.py", "test_sources_wrap.py",
    # the token store's own SQLite thread, on an SQLite file of its own in either pass
    "test_sqlite_batches.py",
    # the fast path's installation, in fresh interpreters and in nodes whose index does nothing
    # but start (PDU limits and C-ECHO)
    "test_fast_path_fence.py",
    # every test on both databases already, each named by the test (its `engine` fixture)
    "test_migrations.py",
})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--dialect-only", action="store_true",
                     help="leave out the test modules that do not depend on the SQL dialect")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "dialect_neutral: a test of a module not DIALECT_NEUTRAL whose outcome does "
        "not depend on the SQL dialect either (left out by --dialect-only)")


def is_dialect_neutral(item: pytest.Item) -> bool:
    return (item.path.name in DIALECT_NEUTRAL
            or item.get_closest_marker("dialect_neutral") is not None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--dialect-only"):
        return
    neutral = [item for item in items if is_dialect_neutral(item)]
    if neutral:
        config.hook.pytest_deselected(items=neutral)
        items[:] = [item for item in items if not is_dialect_neutral(item)]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster on loopback (tests/postgres_peer.py)."""
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session", autouse=True)
def test_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """VIEWNODE_TEST_DB=postgresql: every node of the session on PostgreSQL (tests/index_db.py)."""
    if not index_db.on_postgresql():
        yield
        return
    with index_db.serving(request.getfixturevalue("postgres")):
        yield


@pytest.fixture
def incoming(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder where the store receiver (and pynetdicom, for anything it writes)
    write received data sets, as the node points them at its incoming/ (node/dimse/server.py)."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    receive_in(monkeypatch, folder)
    return folder


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("peers")


@pytest.fixture(scope="session")
def node_ports() -> tuple[int, int]:
    """The DICOM and HTTP ports of the session's node, fixed before any peer starts."""
    return free_port(), free_port()


@pytest.fixture(scope="session")
def orthanc(session_dir: Path, node_ports: tuple[int, int]) -> Iterator[OrthancProcess]:
    peer = OrthancProcess(
        session_dir / "orthanc", modalities={"VIEWNODE": ("VIEWNODE", "127.0.0.1", node_ports[0])}
    ).start()
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def storescp(session_dir: Path) -> Iterator[StoreSCP]:
    peer = StoreSCP(session_dir / "storescp-received").start()
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def node(
    session_dir: Path, node_ports: tuple[int, int], orthanc: OrthancProcess, storescp: StoreSCP
) -> Iterator[NodeProcess]:
    """The node under test, with Orthanc as source node and storescp as a move destination."""
    peer = NodeProcess(
        session_dir / "node",
        dicom_port=node_ports[0],
        http_port=node_ports[1],
        source_nodes=[{"ae_title": orthanc.ae_title, "host": "127.0.0.1",
                       "port": orthanc.dicom_port, "retrieve": "C-MOVE"}],
        move_destinations=[{"ae_title": storescp.ae_title, "host": "127.0.0.1",
                            "port": storescp.port}],
    ).start()
    yield peer
    peer.stop()
