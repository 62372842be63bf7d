"""The HTTP access log: method, path, status and time, without the query string, at DEBUG.

aiohttp's default access log writes the whole request line at INFO, and the viewer APIs carry
patient IDs, accession numbers and study UIDs in their query strings: that would put patient
data in the logs, which only the audit table may hold. It is also a formatted line per request
on the hot path of token issuance; at DEBUG (`python -m node -v serve`) it costs nothing unless
asked for, and the audit table already records every token issued and redeemed.
"""

from __future__ import annotations

import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse


class PathAccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.debug("%s %s %s %d %.1f ms", request.remote, request.method, request.path,
                          response.status, time * 1000)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.DEBUG)
