"""Request bodies as JSON, for every route that reads one.

aiohttp's `request.json()` lets a deeply nested body raise RecursionError (a 500); this reads
the body within the app's size limit and parses it with node.sources.json_input's bound on nesting.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.sources.json_input import parse_json


async def read_json(request: web.Request, field: str = "body") -> Any:
    """The parsed body; InvalidInput (400) naming `field` when it is not JSON or nests too
    deeply, 413 beyond `[http] max_body_bytes`."""
    return parse_json(await request.read(), field)
