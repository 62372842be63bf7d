"""What the WADO sources share: an HTTP session that talks to the one server the request
names, and HTTP failures sorted into "try again" and "give up".

The request's headers (an API key, a bearer token) and the user name and password of its URL go
on every request of the session and to that server only: a redirect to another scheme, host or
port is not followed (the failure says where it led), and every connection's address is checked
by the outbound policy (node/sources/outbound.py) as it is made. Messages name the storage by
its `name` and the resource path, never a header, and never the URL's user-info part.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import BinaryIO

import aiohttp
from yarl import URL

from node.sources.base import SourceError, TransientSourceError
from node.sources.outbound import AddressGuard, OutboundPolicy
from node.sources.request import StorageSpec

CHUNK = 1 << 16
REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5


class WadoSession:
    """The HTTP session of one WADO storage: opened with `open()`, closed with `close()`."""

    def __init__(self, storage: StorageSpec, policy: OutboundPolicy, timeout: float,
                 concurrency: int) -> None:
        self.storage = storage
        self.origin = _origin(URL(storage.url))
        self.guard: AddressGuard = policy.guard(storage.url)
        self.timeout = timeout
        self.concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        headers = dict(self.storage.http_headers)
        storage = self.storage
        if (storage.url_user or storage.url_password) and not any(
                name.lower() == "authorization" for name in headers):
            headers["Authorization"] = aiohttp.encode_basic_auth(storage.url_user,
                                                                 storage.url_password)
        timeout = self.timeout
        self._session = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=min(timeout, 10.0),
                                          sock_read=timeout),
            connector=aiohttp.TCPConnector(limit=max(self.concurrency, 1),
                                           socket_factory=self.guard),
            raise_for_status=False,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @asynccontextmanager
    async def get(self, url: str, where: str, accept: str,
                  params: Mapping[str, str] | None = None
                  ) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET `url` (on the storage's server), its status checked; redirects followed on the
        same server only. Network errors, also while the body is read, become the pipeline's."""
        assert self._session is not None, "open() first"
        target = URL(url)
        try:
            for _ in range(MAX_REDIRECTS + 1):
                async with self._session.get(target, params=params, allow_redirects=False,
                                             headers={"Accept": accept}) as response:
                    if response.status in REDIRECTS and "Location" in response.headers:
                        target = self._redirect(response, where)
                        params = None  # the new location carries its own query
                        continue
                    check_status(response, where)
                    yield response
                    return
        except NETWORK_ERRORS as exc:
            raise self._network_error(where, exc) from None
        raise SourceError(f"{where}: more than {MAX_REDIRECTS} redirects")

    def _redirect(self, response: aiohttp.ClientResponse, where: str) -> URL:
        try:
            target = response.url.join(URL(response.headers["Location"]))
        except ValueError:
            raise SourceError(f"{where}: HTTP {response.status} to an invalid location") from None
        if _origin(target) != self.origin:
            # The request's headers and credentials are for the server it names only.
            scheme, host, port = _origin(target)
            raise SourceError(f"{where}: HTTP {response.status} redirects to another server "
                              f"({scheme}://{host}:{port}); not followed")
        return target

    def _network_error(self, where: str, exc: BaseException) -> SourceError:
        if isinstance(exc, aiohttp.ClientConnectorError) and self.guard.refused:
            # Checked when the request came; resolved elsewhere by now: no retry helps.
            return SourceError(f"{where}: refused: {self.guard.refused}")
        return connection_error(where, exc)


def _origin(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme, (url.host or "").lower().rstrip("."), url.port)


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
