"""Tokens and session cookies: random secrets handed out once and stored only as digests."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading

_TOKEN = re.compile(r"^[0-9a-f]{64}$")
TOKEN_BYTES = 32
# Secrets drawn from `secrets` at once, per thread. Reading the system's random source lets go
# of the GIL, and the token store's thread then waits for the busy event loop to hand it back:
# once per token, that wait was a good part of a token's time under load (bench/tokens). One
# read per POOL_TOKENS tokens costs one wait; every token still gets its own fresh 256 bits.
POOL_TOKENS = 64


class _Pool(threading.local):
    def __init__(self) -> None:
        self.empty()

    def empty(self) -> None:
        self.data = b""
        self.used = 0


_POOL = _Pool()
# A forked child must never hand out what its parent has (or will have) handed out.
os.register_at_fork(after_in_child=_POOL.empty)


def new_token() -> str:
    """64 lowercase hex characters (256 bits from `secrets`), as the spec's examples show."""
    pool = _POOL
    if pool.used >= len(pool.data):
        pool.data = secrets.token_bytes(TOKEN_BYTES * POOL_TOKENS)
        pool.used = 0
    start = pool.used
    pool.used = start + TOKEN_BYTES
    return pool.data[start:start + TOKEN_BYTES].hex()


def digest(secret: str) -> str:
    """What the database keeps instead of the secret itself."""
    return hashlib.sha256(secret.encode("ascii", "replace")).hexdigest()


def looks_like_token(text: str) -> bool:
    return _TOKEN.match(text) is not None
