"""Accept and Content-Type headers, read leniently where DICOMweb clients differ (PS3.18 8.7).

Clients write the same wish many ways: `type` quoted or not, `*/*`, no header at all, a
multipart type for a JSON answer, `application/json` for `application/dicom+json`. What the
node cannot give is a 406 naming the type asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

DICOM_JSON = "application/dicom+json"
_JSON_TYPES = frozenset({DICOM_JSON, "application/json", "application/*", "*/*"})


@dataclass(frozen=True)
class MediaRange:
    """One entry of an Accept header: `type/subtype` and its parameters (lower-case names,
    unquoted values)."""

    media_type: str
    params: dict[str, str]

    @property
    def inner_type(self) -> str:
        """For multipart/related, the `type` parameter; otherwise the media type itself."""
        if self.media_type == "multipart/related":
            return self.params.get("type", "").lower()
        return self.media_type


def accepted(request: web.Request) -> list[MediaRange]:
    """The Accept header's media ranges in the order given (q=0 dropped); `*/*` when absent."""
    ranges = []
    for header in request.headers.getall("Accept", []):
        for entry in _split(header, ","):
            found = media_type(entry)
            if not found.media_type:
                continue
            if found.params.get("q", "1").strip() in ("0", "0.0", "0.00", "0.000"):
                continue
            ranges.append(found)
    return ranges or [MediaRange("*/*", {})]


def media_type(text: str) -> MediaRange:
    """One media type with its parameters, as in Accept entries and Content-Type headers
    (values unquoted, their case kept: a multipart boundary is case-sensitive)."""
    parts = _split(text, ";")
    params = {}
    for part in parts[1:]:
        name, _, value = part.partition("=")
        params[name.strip().lower()] = value.strip().strip('"')
    return MediaRange(parts[0].strip().lower(), params)


def _split(text: str, separator: str) -> list[str]:
    """Split on `separator` outside double quotes (a quoted type may hold ';' or ',')."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


def not_acceptable(ranges: list[MediaRange]) -> web.HTTPNotAcceptable:
    asked = ", ".join(r.media_type + (f'; type="{r.params["type"]}"' if "type" in r.params
                                      else "") for r in ranges)
    return web.HTTPNotAcceptable(reason=f"cannot answer with {asked[:200]}")


def require_json(request: web.Request) -> None:
    """For answers that are DICOM JSON only (QIDO-RS, metadata)."""
    ranges = accepted(request)
    if not any(r.inner_type in _JSON_TYPES or r.media_type in _JSON_TYPES for r in ranges):
        raise not_acceptable(ranges)
