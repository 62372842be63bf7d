"""Tokens and session cookies: random secrets handed out once and stored only as digests."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
import time

_TOKEN = re.compile(r"^[0-9a-f]{64}$")
TOKEN_BYTES = 32
# A token begins with the time it was issued (microseconds since the epoch, 8 bytes) and so
# does its key in the database: the unique index on the keys then grows at its end, and a batch
# of new tokens shares a few index pages. With random keys every token wrote one random index
# page of its own to the WAL and later to the database file (bench/tokens).
ISSUED_BYTES = 8
RANDOM_TOKEN_BYTES = TOKEN_BYTES - ISSUED_BYTES  # 192 random bits
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


def _random_bytes(count: int) -> bytes:
    pool = _POOL
    if pool.used + count > len(pool.data):
        pool.data = secrets.token_bytes(TOKEN_BYTES * POOL_TOKENS)
        pool.used = 0
    start = pool.used
    pool.used = start + count
    return pool.data[start:start + count]


def new_secret() -> str:
    """64 lowercase hex characters, all 256 bits from `secrets` (session cookies)."""
    return _random_bytes(TOKEN_BYTES).hex()


def new_token() -> str:
    """64 lowercase hex characters, as the spec's examples show: the issue time, then 192 bits
    from `secrets`."""
    issued = (time.time_ns() // 1000).to_bytes(ISSUED_BYTES, "big")
    return (issued + _random_bytes(RANDOM_TOKEN_BYTES)).hex()


def digest(secret: str) -> str:
    """What the database keeps instead of a session cookie."""
    return hashlib.sha256(secret.encode("ascii", "replace")).hexdigest()


def token_key(token: str) -> str:
    """What the database keeps instead of a token: its issue time, which is not secret, then
    192 bits of the token's digest (64 characters, like a digest)."""
    return token[:ISSUED_BYTES * 2] + digest(token)[:RANDOM_TOKEN_BYTES * 2]


def token_keys(token: str) -> tuple[str, str]:
    """The keys a token may be stored under: its own, and the bare digest a node before
    migration 0004 kept (such a token stays valid until it expires)."""
    return token_key(token), digest(token)


def looks_like_token(text: str) -> bool:
    return _TOKEN.match(text) is not None
