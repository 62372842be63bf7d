"""C-FIND SCP (Patient Root and Study Root): identifiers in, index matches out.

The handler runs in a pynetdicom thread and reads the matches in batches, so a large answer
starts flowing before the last row is read and a C-CANCEL stops the query early. On a SQLite
file the thread reads the file itself; on PostgreSQL the query runs on the node's event loop and
its batches are pulled over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from typing import Any, TypeVar

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.events import Event

from node import metrics
from node.dimse import fastpath
from node.dimse.ae_access import STATUS_NOT_AUTHORIZED, CallerAccess
from node.dimse.fastpath.find_identifiers import EncodedIdentifier, IdentifierEncoder
from node.dimse.fastpath.message_bytes import cork, flush
from node.dimse.peer_text import peer_address
from node.dimse.qr_identifier import (
    STATUS_CANCEL,
    STATUS_IDENTIFIER_MISMATCH,
    STATUS_PENDING,
    STATUS_UNABLE_TO_PROCESS,
    failure_status,
    parse_identifier,
    response_identifier,
)
from node.errors import InvalidInput
from node.index.query import find_in_thread, stream_find
from node.services import NodeServices

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long closing a query may take when the requester goes away (the loop may be stopping).
_CLOSE_TIMEOUT = 5.0


def pull_batches(
    services: NodeServices, batches: AsyncGenerator[list[T], None], timeout: float,
    before_wait: Callable[[], None] | None = None,
) -> Generator[T, None, None]:
    """Iterate, from a handler thread, an async generator of batches living on the node's loop;
    `before_wait` runs before each wait for the next batch."""

    async def next_batch() -> list[T] | None:
        try:
            return await anext(batches)
        except StopAsyncIteration:
            return None

    try:
        while True:
            if before_wait is not None:
                before_wait()
            batch = services.run_blocking(next_batch(), timeout)
            if batch is None:
                break
            yield from batch
    finally:
        services.run_blocking(batches.aclose(), _CLOSE_TIMEOUT)


def each_in_batches(batches: Generator[list[T], None, None],
                    before_wait: Callable[[], None]) -> Generator[T, None, None]:
    """Iterate batches read in this thread; `before_wait` runs before each batch is read."""
    try:
        while True:
            before_wait()
            batch = next(batches, None)
            if batch is None:
                break
            yield from batch
    finally:
        batches.close()


@metrics.dimse_timed("C-FIND")
def handle_find(event: Event, services: NodeServices, access: CallerAccess
                ) -> Iterator[tuple[Any, Dataset | None]]:
    calling = event.assoc.requestor.ae_title
    started = time.perf_counter()
    if access.refuses("C-FIND", calling, peer_address(event.assoc)):
        yield failure_status(STATUS_NOT_AUTHORIZED, "calling AE title not authorized"), None
        return
    try:
        parsed = parse_identifier(event.identifier, str(event.request.AffectedSOPClassUID))
    except InvalidInput as exc:
        log.warning("C-FIND from %s refused: %s", calling, exc)
        yield failure_status(STATUS_IDENTIFIER_MISMATCH, str(exc)), None
        return
    except Exception as exc:
        log.warning("C-FIND from %s: identifier not decodable: %s", calling, exc)
        yield failure_status(STATUS_UNABLE_TO_PROCESS, "identifier could not be decoded"), None
        return
    ae_title = services.config.node.ae_title
    timeout = services.config.dicom.dimse_timeout
    # Identifiers written as bytes, and pending responses gathered into few writes, are the
    # fast path's (node/dimse/fastpath/): without it, pydicom Datasets one by one.
    encoder = (IdentifierEncoder.for_syntax(parsed, ae_title, str(event.context.transfer_syntax))
               if fastpath.installed() else None)
    count = 0
    # Pending responses leave together, at the latest before the next wait for the database.
    cork(event.assoc)
    def before_wait() -> None:
        flush(event.assoc)

    matches = (
        each_in_batches(find_in_thread(services.thread_reader, parsed.request), before_wait)
        if services.thread_reader is not None else
        pull_batches(services, stream_find(services.sessions, parsed.request), timeout,
                     before_wait))
    try:
        for match in matches:
            if event.is_cancelled:
                log.info("C-FIND from %s cancelled after %d matches", calling, count)
                yield STATUS_CANCEL, None
                return
            count += 1
            encoded = encoder.encode(match) if encoder is not None else None
            yield STATUS_PENDING, (EncodedIdentifier(encoded) if encoded is not None
                                   else response_identifier(parsed, match, ae_title))
    except Exception:
        log.exception("C-FIND from %s failed", calling)
        yield failure_status(STATUS_UNABLE_TO_PROCESS, "query failed"), None
        return
    finally:
        matches.close()
    log.info("C-FIND %s level from %s: %d matches in %.1f ms", parsed.request.level.name,
             calling, count, (time.perf_counter() - started) * 1000)


def handlers(services: NodeServices, access: CallerAccess) -> list[tuple[Any, ...]]:
    return [(evt.EVT_C_FIND, handle_find, [services, access])]
