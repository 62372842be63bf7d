"""What the WADO sources share: an HTTP session with the request's headers, and HTTP failures
sorted into "try again" and "give up".

The request's headers (an API key, a bearer token) go on every request of the session and
nowhere else: messages name the storage by its `name` and the resource path, never a header,
and never the URL's user-info part.
"""

from __future__ import annotations

import asyncio
from typing import BinaryIO
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from node.sources.base import SourceError, TransientSourceError

CHUNK = 1 << 16


def safe_url(url: str) -> str:
    """The URL without user:password@, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


def new_session(headers: dict[str, str], timeout: float, concurrency: int
                ) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=min(timeout, 10.0),
                                      sock_read=timeout),
        connector=aiohttp.TCPConnector(limit=max(concurrency, 1)),
        raise_for_status=False,
    )


def check_status(response: aiohttp.ClientResponse, where: str) -> None:
    status = response.status
    if status < 300:
        return
    message = f"{where}: HTTP {status} {response.reason or ''}".rstrip()
    if status >= 500 or status in (408, 429):
        raise TransientSourceError(message)
    raise SourceError(message)


async def copy_body(stream: aiohttp.StreamReader | aiohttp.BodyPartReader, out: BinaryIO
                    ) -> int:
    size = 0
    if isinstance(stream, aiohttp.BodyPartReader):
        while chunk := await stream.read_chunk(CHUNK):
            out.write(chunk)
            size += len(chunk)
    else:
        async for chunk in stream.iter_chunked(CHUNK):
            out.write(chunk)
            size += len(chunk)
    return size


def connection_error(where: str, exc: BaseException) -> TransientSourceError:
    if isinstance(exc, asyncio.TimeoutError):
        return TransientSourceError(f"{where}: timed out")
    return TransientSourceError(f"{where}: {type(exc).__name__}")


NETWORK_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError)
