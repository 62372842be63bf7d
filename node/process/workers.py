"""Several serving processes behind one DICOM port and one HTTP port, and their supervisor.

Python runs one core per process (the GIL), and the node's hot paths (a C-STORE's command and
header parsing, a token's request handling) are Python: one process left the second core of a
two-core machine mostly idle under load. So `serve` with `[node] workers` above one forks that
many workers, each a whole node (DICOM SCP, HTTP API, background jobs) on the one index and
storage, as several instances already share them (ARCHITECTURE.md, "Several instances").

The supervisor does what must happen once, before any worker runs: the API key, the schema, and
finishing what a crash left in incoming/. Then it binds the ports itself, so that they stay
open while a worker restarts (connections wait in the backlog instead of being refused), with
one listening socket per port, which all workers accept on, each leaving a new connection to a
less busy one (node/dimse/shared_listener.py, node/process/http_listener.py).
A worker starts listening once it is ready, so an open port means a node that answers. It forks
the workers from a process that has loaded every module (copy-on-write: a worker is
ready in a fraction of a second), restarts one that dies (it first finishes what that worker
left in its own incoming/ folder), and on SIGTERM/SIGINT stops them all gracefully. A worker
dies with the supervisor (PR_SET_PDEATHSIG), so killing the supervisor kills the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import FrameType
from typing import Any

from node import metrics
from node.config import Config
from node.dimse.server import SharedListener
from node.errors import ConfigError, NodeError
from node.process.association_limit import AssociationLimit
from node.process.connection_load import ConnectionLoad
from node.process.runtime import WorkerPlace

log = logging.getLogger(__name__)

# A worker that dies sooner than this after its start failed to start.
QUICK_FAILURE_SECONDS = 10.0
# Failures to start in a row after which the supervisor gives up (the cause is not transient:
# a configuration the workers cannot serve, a port another program holds, a broken database).
MAX_QUICK_FAILURES = 3
RESTART_DELAY_SECONDS = 0.5
MAX_RESTART_DELAY_SECONDS = 30.0
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerSockets:
    """What one worker serves: its place among the workers and its share of the two ports."""

    place: WorkerPlace
    dicom: SharedListener
    http: socket.socket
    http_load: ConnectionLoad


ServeWorker = Callable[[Config, WorkerSockets], Coroutine[Any, Any, None]]


def supervise(config: Config, count: int, serve: ServeWorker) -> int:
    """Run `count` workers, each `serve`, until SIGTERM/SIGINT; the exit status of `serve`.
    The caller has prepared the database and incoming/ (node/commands/serve_command.py: prepare)."""
    dicom = _bound_socket(config.dicom.bind, config.dicom.port)
    http = _bound_socket(config.http.bind, config.http.port)
    if threading.active_count() > 1:  # forking copies no thread: their locks could stay held
        log.warning("forking workers beside %d other threads", threading.active_count() - 1)
    supervisor = _Supervisor(config, count, dicom, http, serve)
    log.info("serving with %d worker processes on DICOM port %d and HTTP port %d",
             count, dicom.getsockname()[1], http.getsockname()[1])
    return supervisor.run()


def _bound_socket(host: str, port: int) -> socket.socket:
    """Bound, not listening: a worker starts listening once it is ready, so that an open port
    means a node that answers (node/dimse/shared_listener.py, node/process/http_listener.py)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise NodeError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


class _Supervisor:
    def __init__(self, config: Config, count: int, dicom: socket.socket,
                 http: socket.socket, serve: ServeWorker) -> None:
        self.config = config
        self.serve = serve
        self.count = count
        self.dicom = dicom
        self.http = http
        self.load = ConnectionLoad(count)
        self.http_load = ConnectionLoad(count)
        # dicom.max_associations is the node's, not each worker's.
        self.association_limit = AssociationLimit(count, config.dicom.max_associations)
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, started)
        self.stopping = False
        self.quick_failures = 0
        self.exit_code = 0
        self.pid = os.getpid()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for index in range(self.count):
            self._fork(index)
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            index, started = self.children.pop(pid, (-1, 0.0))
            if index < 0:
                continue
            metrics.worker_gone(pid)
            self.load.mark_stopped(index)
            self.http_load.mark_stopped(index)
            self.association_limit.clear(index)
            if not self.stopping:
                self._replace(index, started, os.waitstatus_to_exitcode(status))
        return self.exit_code

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop()

    def _stop(self) -> None:
        if not self.stopping:
            log.info("stopping %d workers", len(self.children))
        self.stopping = True
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _replace(self, index: int, started: float, code: int) -> None:
        """Start another worker in its place. While another worker serves, a worker that keeps
        failing at start-up (a bucket gone away) is retried ever less often; when none does,
        the node stops after a few tries: the cause is not transient."""
        quick = time.monotonic() - started < QUICK_FAILURE_SECONDS
        self.quick_failures = self.quick_failures + 1 if quick else 0
        if self.quick_failures >= MAX_QUICK_FAILURES and not self.load.any_serving():
            log.error("worker %d exited with status %d, %d workers in a row did not start: "
                      "stopping", index + 1, code, self.quick_failures)
            self.exit_code = 1
            self._stop()
            return
        delay = min(MAX_RESTART_DELAY_SECONDS,
                    RESTART_DELAY_SECONDS * 2 ** max(0, self.quick_failures - 1))
        log.error("worker %d exited with status %d; starting a new one in %.1f s",
                  index + 1, code, delay)
        time.sleep(delay)
        if not self.stopping:
            self._fork(index)

    def _fork(self, index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os._exit(self._work(index))
        self.children[pid] = (index, time.monotonic())

    def _work(self, index: int) -> int:
        """The worker's life, in the forked child; its exit status."""
        code = 1
        try:
            _die_with_parent(self.pid)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _tag_log_lines(index)
            sockets = WorkerSockets(WorkerPlace(index, self.count),
                                    SharedListener(self.dicom, self.load, index,
                                                   self.association_limit), self.http,
                                    self.http_load)
            asyncio.run(self.serve(self.config, sockets))
            code = 0
        except ConfigError as exc:
            print(f"configuration error: {exc}", file=sys.stderr)
            code = 2
        except NodeError as exc:
            print(f"error: {exc}", file=sys.stderr)
        except BaseException:
            log.exception("worker %d failed", index + 1)
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        return code


def _die_with_parent(parent: int) -> None:
    """SIGKILL this worker when the supervisor dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("could not tie the worker's life to the supervisor (errno %d)",
                    ctypes.get_errno())
    if os.getppid() != parent:  # it died before the call above
        os._exit(1)


def _tag_log_lines(index: int) -> None:
    """Name the worker in its log lines."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s %(levelname)s [worker {index + 1}] %(name)s: %(message)s"))
