"""A private PostgreSQL cluster for the tests: Debian's server binaries, started by the tests.

initdb refuses to run as root, so as root the cluster belongs to the `postgres` system user
(the Debian package creates it) and lives in a folder that user can enter; as anyone else it
belongs to the caller. It listens on 127.0.0.1 only, on a free port, with trust authentication
and without fsync: the tests need a real server's behaviour (locking, isolation, types), not
its durability.

Each data folder of a node under test gets a database of its own, named after the folder, so
that two configurations sharing a data folder share a database, as they share index.sqlite on
SQLite.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.peers import free_port

USER = "viewnode"


def server_binaries() -> Path:
    """The newest installed server's bin folder (/usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")
    return Path(found[-1]).parent


@dataclass
class PostgresCluster:
    # In /tmp itself: a DICOM server started earlier in the session points tempfile's default
    # folder at its incoming/, which the postgres user cannot enter.
    folder: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="viewnode-pg-", dir="/tmp")))
    port: int = field(default_factory=free_port)
    # Benchmarks measure with a deployment's durability; tests need none.
    fsync: bool = False
    _databases: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        owner = "postgres" if os.geteuid() == 0 else None
        done = subprocess.run(list(args), user=owner, capture_output=True, text=True,
                              timeout=120, cwd=self.folder)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}")
        return done

    def start(self) -> PostgresCluster:
        binaries = server_binaries()
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.folder.chmod(0o755)
        self._run(str(binaries / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        durability = [] if self.fsync else [
            "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        options = " ".join([
            "-c listen_addresses=127.0.0.1", f"-p {self.port}",
            f"-c unix_socket_directories={self.folder}",
            *durability, "-c max_connections=500", "-c shared_buffers=64MB",
        ])
        self._run(str(binaries / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.folder / "server.log"), "-o", options, "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        if self.data.exists():
            self._run(str(server_binaries() / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                      "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str, driver: str = "asyncpg") -> str:
        return f"postgresql+{driver}://{USER}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=USER, dbname=database,
                               autocommit=True)

    def create_database(self, name: str) -> str:
        """A new empty database (dropped first if a previous use left one); its asyncpg URL."""
        with self._lock:
            return self._create(name)

    def _create(self, name: str) -> str:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        self._databases.add(name)
        return self.url(name)

    def database_for(self, data_dir: Path) -> str:
        """The database of a node's data folder, created on first use; its asyncpg URL."""
        key = str(Path(data_dir).resolve())
        name = "node_" + hashlib.sha1(key.encode()).hexdigest()[:24]
        with self._lock:
            if name not in self._databases:
                self._create(name)
        return self.url(name)
