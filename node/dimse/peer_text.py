"""Text a peer chose (an AE title, a decoding error about its bytes), made fit for one log line.

A log line is read in terminals and parsed by log shippers: a control character from the
network could rewrite the screen (ESC sequences) or forge a line of its own (a newline).
"""

from __future__ import annotations

from typing import Any


def printable(text: str, limit: int = 200) -> str:
    """`text` with every non-printable character escaped (\\x1b, \\n, ...), cut to `limit`."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit] + "..."


def peer_address(assoc: Any) -> str:
    """The requestor's "host:port" of an association the node accepted ("?" before it is
    known)."""
    info = getattr(getattr(assoc, "requestor", None), "address_info", None)
    if info is None:
        return "?"
    host = str(info.address)
    return f"[{host}]:{info.port}" if ":" in host else f"{host}:{info.port}"
