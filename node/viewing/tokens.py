"""Tokens and session cookies: random secrets handed out once and stored only as digests."""

from __future__ import annotations

import hashlib
import re
import secrets

_TOKEN = re.compile(r"^[0-9a-f]{64}$")


def new_token() -> str:
    """64 lowercase hex characters (256 bits from `secrets`), as the spec's examples show."""
    return secrets.token_hex(32)


def digest(secret: str) -> str:
    """What the database keeps instead of the secret itself."""
    return hashlib.sha256(secret.encode("ascii", "replace")).hexdigest()


def looks_like_token(text: str) -> bool:
    return _TOKEN.match(text) is not None
