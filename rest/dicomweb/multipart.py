"""multipart/related responses (PS3.18 8.6), written as they are read: a study's files or a
series' frames are streamed part by part, never gathered in memory."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

from aiohttp import web

CHUNK = 1 << 20
CRLF = b"\r\n"


class MultipartRelated:
    """One multipart/related answer: `start`, then `part`/`file_part` per part, then `finish`."""

    def __init__(self, request: web.Request, inner_type: str,
                 headers: dict[str, str] | None = None) -> None:
        self._request = request
        self._boundary = secrets.token_hex(16)
        self.response = web.StreamResponse(headers={
            "Content-Type": f'multipart/related; type="{inner_type}"; '
                            f"boundary={self._boundary}",
            **(headers or {})})
        self._started = False

    async def _start(self) -> None:
        if not self._started:
            self.response.enable_chunked_encoding()
            await self.response.prepare(self._request)
            self._started = True

    def _head(self, content_type: str, location: str = "") -> bytes:
        lines = [f"--{self._boundary}", f"Content-Type: {content_type}"]
        if location:
            lines.append(f"Content-Location: {location}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")

    async def part(self, content_type: str, body: bytes, location: str = "") -> None:
        await self._start()
        await self.response.write(self._head(content_type, location) + body + CRLF)

    async def file_part(self, content_type: str, path: Path, location: str = "") -> None:
        await self._start()
        await self.response.write(self._head(content_type, location))
        with path.open("rb") as file:
            while chunk := await asyncio.to_thread(file.read, CHUNK):
                await self.response.write(chunk)
        await self.response.write(CRLF)

    async def finish(self) -> web.StreamResponse:
        await self._start()
        await self.response.write(f"--{self._boundary}--\r\n".encode("ascii"))
        await self.response.write_eof()
        return self.response
