"""The URLs DICOMweb answers carry (RetrieveURL, BulkDataURI): on the node's own origin and
path as the client reached it, so that they work through a reverse proxy.

X-Forwarded-Proto, X-Forwarded-Host and X-Forwarded-Prefix (or RFC 7239 Forwarded) are believed
only from a peer listed in `[http] trusted_proxies`; from anyone else the request's own scheme and
Host are used, so that a client cannot make the node hand out links to another site.
"""

from __future__ import annotations

import re

from aiohttp import web

from rest.client_address import from_trusted_proxy

BASE_PATH = "/dicom-web"
_HOST = re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,255}$")
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~\-]+)*$")
_FORWARDED_PAIR = re.compile(r'(proto|host)="?([^";,]+)"?', re.IGNORECASE)


def _first(value: str) -> str:
    return value.split(",")[0].strip()


def _direct_host(request: web.Request) -> str:
    """The Host header, with the port the connection reached when the header leaves it out
    (some clients, dicomweb-client among them, send the bare host name): links must work."""
    host = request.host
    if host.endswith("]") or ":" not in host:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        port = sockname[1] if isinstance(sockname, tuple) and len(sockname) > 1 else None
        if port and port != {"http": 80, "https": 443}.get(request.scheme):
            host = f"{host}:{port}"
    return host


def base_url(request: web.Request) -> str:
    """The DICOMweb root as the client sees it, e.g. https://pacs.example/node/dicom-web."""
    scheme, host, prefix = request.scheme, _direct_host(request), ""
    if from_trusted_proxy(request):
        forwarded = request.headers.get("Forwarded", "")
        pairs = {k.lower(): v for k, v in _FORWARDED_PAIR.findall(_first(forwarded))}
        scheme = _first(request.headers.get("X-Forwarded-Proto", "")) or pairs.get(
            "proto", scheme)
        host = _first(request.headers.get("X-Forwarded-Host", "")) or pairs.get("host", host)
        prefix = _first(request.headers.get("X-Forwarded-Prefix", "")).rstrip("/")
    if scheme not in ("http", "https"):
        scheme = request.scheme
    if not _HOST.match(host):
        host = _direct_host(request)
    if not _PREFIX.match(prefix):
        prefix = ""
    return f"{scheme}://{host}{prefix}{BASE_PATH}"
