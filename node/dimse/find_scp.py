"""C-FIND SCP (Patient Root and Study Root): identifiers in, index matches out.

The handler runs in a pynetdicom thread; the query runs on the node's event loop and its rows are
pulled over in batches, so a large answer starts flowing before the last row is read and a
C-CANCEL stops the query early.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Generator, Iterator
from typing import Any, TypeVar

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.events import Event

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
from node.index.query import stream_find
from node.services import NodeServices

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long closing a query may take when the requester goes away (the loop may be stopping).
_CLOSE_TIMEOUT = 5.0


def pull_batches(
    services: NodeServices, batches: AsyncGenerator[list[T], None], timeout: float
) -> Generator[T, None, None]:
    """Iterate, from a handler thread, an async generator of batches living on the node's loop."""

    async def next_batch() -> list[T] | None:
        try:
            return await anext(batches)
        except StopAsyncIteration:
            return None

    try:
        while (batch := services.run_blocking(next_batch(), timeout)) is not None:
            yield from batch
    finally:
        services.run_blocking(batches.aclose(), _CLOSE_TIMEOUT)


def handle_find(event: Event, services: NodeServices) -> Iterator[tuple[Any, Dataset | None]]:
    calling = event.assoc.requestor.ae_title
    started = time.perf_counter()
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
    count = 0
    matches = pull_batches(services, stream_find(services.sessions, parsed.request), timeout)
    try:
        for match in matches:
            if event.is_cancelled:
                log.info("C-FIND from %s cancelled after %d matches", calling, count)
                yield STATUS_CANCEL, None
                return
            count += 1
            yield STATUS_PENDING, response_identifier(parsed, match, ae_title)
    except Exception:
        log.exception("C-FIND from %s failed", calling)
        yield failure_status(STATUS_UNABLE_TO_PROCESS, "query failed"), None
        return
    finally:
        matches.close()
    log.info("C-FIND %s level from %s: %d matches in %.1f ms", parsed.request.level.name,
             calling, count, (time.perf_counter() - started) * 1000)


def handlers(services: NodeServices) -> list[tuple[Any, ...]]:
    return [(evt.EVT_C_FIND, handle_find, [services])]
