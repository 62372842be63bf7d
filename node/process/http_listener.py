"""The HTTP port shared by the worker processes, each taking its share of new connections.

Like the DICOM port (node/dimse/shared_listener.py), and for the same reason: a viewer's or a
load generator's keep-alive connections arrive in a burst and then stay, and spread by the
kernel's hash over one SO_REUSEPORT socket per worker they split unevenly (32 connections came
out 20/12 as often as not, and the busier worker bounded the rate). So all workers accept on
one socket, and a worker with more open connections than another live one leaves a new one
to it for a few milliseconds. An accepted socket goes to the worker's aiohttp server as if it
had accepted it itself (`loop.connect_accepted_socket`).
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import time
from collections.abc import Callable
from typing import Any

from node.process.connection_load import (
    REFRESH_SECONDS,
    YIELD_POLL_SECONDS,
    YIELD_SECONDS,
    ConnectionLoad,
)

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 1024


class SharedHttpListener:
    def __init__(self, listener: socket.socket, load: ConnectionLoad, worker: int,
                 protocol: Callable[[], asyncio.Protocol], open_connections: Callable[[], int]
                 ) -> None:
        self._listener = listener
        self._load = load
        self._worker = worker
        self._protocol = protocol
        self._open_connections = open_connections
        self._loop: asyncio.AbstractEventLoop | None = None
        self._yielding_since: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        """Listen (the supervisor bound the socket; the first worker ready opens it)."""
        self._loop = asyncio.get_running_loop()
        self._listener.setblocking(False)
        self._listener.listen(LISTEN_BACKLOG)
        self._load.publish(self._worker, self._open_connections())
        self._loop.add_reader(self._listener.fileno(), self._readable)
        self._loop.call_later(REFRESH_SECONDS, self._refresh)

    def _refresh(self) -> None:
        """Publish the open connections again, every REFRESH_SECONDS: the count published
        when a connection was accepted stays too high once connections close."""
        if self._loop is None:
            return
        self._load.publish(self._worker, self._open_connections())
        self._loop.call_later(REFRESH_SECONDS, self._refresh)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._listener.fileno())
            self._load.mark_stopped(self._worker)
            self._loop = None

    def _readable(self) -> None:
        loop = self._loop
        if loop is None:
            return
        self._load.publish(self._worker, self._open_connections())
        if self._load.busier_than_another(self._worker):
            now = time.monotonic()
            if self._yielding_since is None:
                self._yielding_since = now
            if now - self._yielding_since < YIELD_SECONDS:
                # Look again shortly, not at once: readable stays true until someone accepts.
                loop.remove_reader(self._listener.fileno())
                loop.call_later(YIELD_POLL_SECONDS, self._look_again)
                return
        self._yielding_since = None
        try:
            client, _address = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return  # another worker took it
        except OSError as exc:  # out of file descriptors, and the like: keep serving
            log.warning("accepting an HTTP connection failed: %s", exc)
            return
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._load.publish(self._worker, self._open_connections() + 1)
        task = loop.create_task(self._serve(loop, client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, loop: asyncio.AbstractEventLoop, client: socket.socket) -> None:
        try:
            await loop.connect_accepted_socket(self._protocol, client)
        except OSError:  # the client went away meanwhile
            client.close()

    def _look_again(self) -> None:
        if self._loop is None:
            return
        readable, _, _ = select.select([self._listener], [], [], 0)
        if not readable:  # another worker took it
            self._yielding_since = None
        self._loop.add_reader(self._listener.fileno(), self._readable)
