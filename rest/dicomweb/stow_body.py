"""A multipart/related body held whole in memory, split into its parts (RFC 2046 5.1.1).

STOW-RS bodies of many small instances cost aiohttp's streaming reader more event-loop time
than the rest of the request: it reads every part line by line and chunk by chunk in Python.
Held whole, a body is split with one `bytes.find` per part, and each part's bytes are a
memoryview of the body (no copy) handed to the ingest threads.

What is accepted is what the streaming reader accepts, with CRLF line endings only:
- a preamble before the first boundary line, and an epilogue after the closing one, are
  skipped;
- a part ends at the first CRLF "--" boundary; one with a Content-Length holds exactly that
  many bytes, which must be followed by CRLF "--" boundary (so its data may hold the boundary);
- a boundary line may carry trailing spaces or tabs (transport padding), nothing else;
- a part without headers (an empty line at once) has none: it is taken to be of the body's
  declared type.
Anything else (a missing close delimiter, a bare-LF boundary or header line, a header line
without a colon, too many or too long header lines) is `MalformedBody`, naming the part.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

CRLF = b"\r\n"
# As aiohttp's reader: header lines of a part, their length, and their number.
MAX_HEADER_LINE = 8190
MAX_HEADERS = 128


class MalformedBody(ValueError):
    """The body is not a multipart body with this boundary; the message says where."""


@dataclass(frozen=True)
class BodyPart:
    """One part: its headers (lower-case names, values stripped) and its bytes."""

    headers: dict[str, str]
    data: memoryview


def split_body(body: bytes, boundary: str) -> Iterator[BodyPart]:
    """The parts of `body` in order, up to its close delimiter. Raises MalformedBody where
    the body stops being well formed; the parts before it have been yielded by then."""
    try:
        dash_boundary = b"--" + boundary.encode("ascii")
    except UnicodeEncodeError:
        raise MalformedBody("the boundary is not ASCII") from None
    delimiter = CRLF + dash_boundary
    view = memoryview(body)
    if body.startswith(dash_boundary):
        at = len(dash_boundary)
    else:
        found = body.find(delimiter)
        if found < 0:
            raise MalformedBody(f"no boundary line {dash_boundary.decode()!r}")
        at = found + len(delimiter)
    number = 1
    while True:
        at = _after_boundary_line(body, at, number)
        if at < 0:
            return
        headers, at = _headers(body, at, number)
        length = headers.get("content-length")
        if length is None:
            end = body.find(delimiter, at)
            if end < 0:
                raise MalformedBody(f"part {number} is not closed by a boundary")
        else:
            if not (length.isascii() and length.isdigit()):
                raise MalformedBody(f"part {number}: invalid Content-Length {length[:40]!r}")
            end = at + int(length)
            if body[end:end + len(delimiter)] != delimiter:
                raise MalformedBody(f"part {number} is not followed by a boundary where its "
                                    f"Content-Length ends")
        yield BodyPart(headers, view[at:end])
        at = end + len(delimiter)
        number += 1


def _after_boundary_line(body: bytes, at: int, number: int) -> int:
    """Where part `number` starts after the boundary ending at `at`, or -1 after the close
    delimiter (the epilogue is not read)."""
    if body.startswith(b"--", at):
        return -1
    while body[at:at + 1] in (b" ", b"\t"):
        at += 1
    if not body.startswith(CRLF, at):
        raise MalformedBody(f"the boundary line before part {number} does not end in CRLF")
    return at + 2


def _headers(body: bytes, at: int, number: int) -> tuple[dict[str, str], int]:
    """Part `number`'s headers, read from `at`, and where its data starts."""
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        end = body.find(CRLF, at, at + MAX_HEADER_LINE + 2)
        if end < 0:
            raise MalformedBody(f"part {number}: a header line is unterminated or longer than "
                                f"{MAX_HEADER_LINE} bytes")
        if end == at:
            return headers, end + 2
        name, colon, value = body[at:end].decode("latin-1").partition(":")
        if not colon or not name or name != name.strip() or "\n" in value or "\r" in value:
            raise MalformedBody(f"part {number}: invalid header line {name[:40]!r}")
        headers[name.lower()] = value.strip(" \t")
        at = end + 2
    raise MalformedBody(f"part {number} has more than {MAX_HEADERS} header lines")
