"""Real peers for the tests: the node itself as a process, Orthanc, and DCMTK's storescp.

Each is started on 127.0.0.1 with free ports and stopped by PID. DCMTK tools and Orthanc get
TCP_NODELAY=1 so that they run at their best.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import fast_path
from tests.index_db import database_url

REPO = Path(__file__).resolve().parent.parent
PEER_ENV = {**os.environ, "TCP_NODELAY": "1"}
# The calling AE titles DCMTK's query and retrieve tools use unless told otherwise: the tests'
# nodes let them query (dicom.query_from), as a hospital lists its workstations.
DCMTK_QUERY_CALLERS = ("FINDSCU", "MOVESCU", "GETSCU")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word: a hung PACS."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 60.0, proc: subprocess.Popen[Any] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout} s")


def incoming_files(data_dir: Path) -> list[Path]:
    """Files left in a node's incoming/, its worker processes' folders of it included."""
    return sorted(p for p in (data_dir / "incoming").rglob("*") if p.is_file())


def dcmtk(tool: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool; the caller checks returncode and output."""
    return subprocess.run(
        [tool, *args], env=PEER_ENV, capture_output=True, text=True, timeout=timeout
    )


def toml_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(str(value))


@dataclass
class NodeProcess:
    """`python -m node serve` in a folder of its own."""

    folder: Path
    ae_title: str = "VIEWNODE"
    dicom_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    api_key: str = "test-api-key-0123456789abcdef"
    source_nodes: list[dict[str, Any]] = field(default_factory=list)
    move_destinations: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    # dicom.query_from; None leaves the key out (the node's default).
    query_from: tuple[str, ...] | None = DCMTK_QUERY_CALLERS
    # The node process's environment (default PEER_ENV); `--verbose` when set.
    env: dict[str, str] | None = None
    verbose: bool = False
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.folder / "node.toml"

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def write_config(self) -> None:
        sections: dict[str, dict[str, Any]] = {
            "node": {"ae_title": self.ae_title, "data_dir": "data"},
            "dicom": {"bind": "127.0.0.1", "port": self.dicom_port, "query_timeout": 5.0},
            "http": {"bind": "127.0.0.1", "port": self.http_port},
            "api": {"servlet_authorization_header": self.api_key},
        }
        if self.query_from is not None:
            sections["dicom"]["query_from"] = list(self.query_from)
        if not fast_path.ON:
            sections["dicom"]["fast_path"] = False
        for name, values in self.extra.items():
            sections.setdefault(name, {}).update(values)
        if "database" not in sections:
            url = database_url(self.folder / sections["node"]["data_dir"])
            if url is not None:
                sections["database"] = {"url": url}
        lines = []
        for name, values in sections.items():
            lines.append(f"[{name}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
        for table, entries in (
            ("source_nodes", self.source_nodes),
            ("move_destinations", self.move_destinations),
        ):
            for entry in entries:
                lines.append(f"[[{table}]]")
                lines += [f"{k} = {toml_value(v)}" for k, v in entry.items()]
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("\n".join(lines) + "\n")

    def cli(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run `python -m node ARGS --config <this node's config>`."""
        return subprocess.run(
            [sys.executable, "-m", "node", *args, "--config", str(self.config_path)],
            cwd=REPO, capture_output=True, text=True, timeout=timeout, env=PEER_ENV,
        )

    def start(self) -> NodeProcess:
        self.write_config()
        log = (self.folder / "node.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node", *(["--verbose"] if self.verbose else []), "serve",
             "--config", str(self.config_path)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=self.env or PEER_ENV,
        )
        wait_for_port(self.dicom_port, proc=self.proc)
        wait_for_port(self.http_port, proc=self.proc)
        return self

    def log_text(self) -> str:
        return (self.folder / "node.log").read_text(errors="replace")

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the node; with worker processes, return once they are dead too (they die
        with their supervisor, a moment after it)."""
        if self.proc is not None:
            pid = self.proc.pid
            try:
                workers = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except FileNotFoundError:
                workers = []
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            deadline = time.monotonic() + 30
            while any(alive(w) for w in workers):
                assert time.monotonic() < deadline, f"workers {workers} outlived the supervisor"
                time.sleep(0.02)
        self.proc = None


def alive(pid: int | str) -> bool:
    """Whether a thread of the process still runs. Its main thread shows as a zombie as soon as
    it exits, while others may still end a system call (write a file); once every thread has
    exited the process holds nothing any more (memory, files, sockets, locks), though it waits
    to be reaped: orphaned workers wait for the container's init, ~1.5 s."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return False
    for task in tasks:
        # A thread gone: its entry missing, or ESRCH when it exited while its stat was read.
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if state != "Z":
            return True
    return False


@dataclass
class OrthancProcess:
    """Orthanc with its DICOMweb plugin, as a PACS on loopback."""

    folder: Path
    ae_title: str = "ORTHANC"
    dicom_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    modalities: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    # Further "DicomWeb" settings (e.g. {"SeriesMetadata": "MainDicomTags"}).
    dicomweb: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> OrthancProcess:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "test-orthanc",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.ae_title,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowMove": True,
            "DicomModalities": {k: list(v) for k, v in self.modalities.items()},
            "SynchronousCMove": True,
            "StableAge": 1,
            "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True,
                         "WadoRoot": "/wado", **self.dicomweb},
        }
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        log = (self.folder / "orthanc.log").open("ab")
        self.proc = subprocess.Popen(
            ["Orthanc", str(path)], stdout=log, stderr=subprocess.STDOUT, env=PEER_ENV
        )
        wait_for_port(self.http_port, proc=self.proc, timeout=60)
        wait_for_port(self.dicom_port, proc=self.proc, timeout=60)
        return self

    def upload(self, path: Path) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.http_url}/instances", data=path.read_bytes(), method="POST",
            headers={"Content-Type": "application/dicom"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result

    def get_json(self, route: str) -> Any:
        with urllib.request.urlopen(f"{self.http_url}{route}", timeout=30) as response:
            return json.loads(response.read())

    def set_modality(self, ae_title: str, host: str, port: int) -> None:
        """Know `ae_title` at host:port from now on (a C-MOVE destination), until a restart."""
        request = urllib.request.Request(
            f"{self.http_url}/modalities/{ae_title}", method="PUT",
            data=json.dumps({"AET": ae_title, "Host": host, "Port": port}).encode())
        urllib.request.urlopen(request, timeout=30).close()

    def remove_modality(self, ae_title: str) -> None:
        """Forget `ae_title`: a C-MOVE to it is refused (0xA801). Known or not before."""
        request = urllib.request.Request(f"{self.http_url}/modalities/{ae_title}",
                                         method="DELETE")
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@dataclass
class StoreSCP:
    """DCMTK storescp as a C-MOVE destination, writing what it receives to a folder."""

    folder: Path
    ae_title: str = "STORESCP"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> StoreSCP:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder.parent / f"{self.folder.name}.log").open("ab")
        self.proc = subprocess.Popen(
            ["storescp", "-aet", self.ae_title, "+xa", "-od", str(self.folder), str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env=PEER_ENV,
        )
        wait_for_port(self.port, proc=self.proc)
        return self

    def received(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())

    def clear(self) -> None:
        shutil.rmtree(self.folder)
        self.folder.mkdir()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
