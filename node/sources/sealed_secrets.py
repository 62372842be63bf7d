"""A POST request's cloud keys and WADO headers, sealed while its import may still need them.

The import runs as a job that may be resumed after a crash, by this instance or another one on
the same database, so the request's secrets must outlive the request. They are kept only in
`sealed_credentials`, encrypted with AES-GCM (256-bit key) and bound to their viewing context
(the context id is the associated data: a row copied onto another context does not open).
The key is a file made on first use with mode 0600, `<data_dir>/credentials.key` unless
`[sources] credentials_key_file` names another; instances sharing a database must share it.
A row is deleted when its import is done and once its token has expired (swept at start and
while the node runs). Nothing here logs a secret or puts one in an exception's message.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node.errors import ConfigError
from node.index.import_queries import (
    add_sealed_credentials,
    delete_expired_credentials,
    sealed_credentials,
)

log = logging.getLogger(__name__)

NONCE_BYTES = 12
KEY_BYTES = 32


class CredentialVault:
    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self._aead: AESGCM | None = None
        self._lock = threading.Lock()

    def _cipher(self) -> AESGCM:
        with self._lock:
            if self._aead is None:
                self._aead = AESGCM(_load_or_make_key(self.key_file))
            return self._aead

    def seal(self, context_pk: int, secrets: dict[str, Any]) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        plain = json.dumps(secrets, separators=(",", ":")).encode()
        return nonce + self._cipher().encrypt(nonce, plain, _bound_to(context_pk))

    def unseal(self, context_pk: int, sealed: bytes) -> dict[str, Any] | None:
        """The secrets, or None when they cannot be opened (another key, another context)."""
        try:
            plain = self._cipher().decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:],
                                           _bound_to(context_pk))
        except InvalidTag:
            return None
        value = json.loads(plain)
        return value if isinstance(value, dict) else None

    def store(self, session: AsyncSession, context_pk: int, secrets: dict[str, Any],
              expires_at: datetime) -> None:
        """Add the sealed row to `session` (committed with the context and its job)."""
        add_sealed_credentials(session, context_pk, self.seal(context_pk, secrets), expires_at)

    async def load(self, sessions: async_sessionmaker[AsyncSession], context_pk: int
                   ) -> dict[str, Any] | None:
        """The context's secrets while they are kept and unexpired; None otherwise."""
        row = await sealed_credentials(sessions, context_pk)
        if row is None or _aware(row[1]) <= datetime.now(UTC):
            return None
        return self.unseal(context_pk, row[0])

    @staticmethod
    async def sweep(sessions: async_sessionmaker[AsyncSession]) -> int:
        """Delete the rows whose token has expired; how many."""
        swept = await delete_expired_credentials(sessions, datetime.now(UTC))
        if swept:
            log.info("deleted the sealed credentials of %d expired token(s)", swept)
        return swept


def _bound_to(context_pk: int) -> bytes:
    return f"viewnode sealed credentials of context {context_pk}".encode()


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes for what was written as UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _load_or_make_key(path: Path) -> bytes:
    """The key in `path`, made first if there is none. Made in a private temporary file and
    linked into place, so that instances starting at once on a shared folder all end up with
    the one that won, and nobody reads a half-written key."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(base64.b64encode(os.urandom(KEY_BYTES)) + b"\n")
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(temporary, path)
                log.info("made a new credentials key in %s", path)
            except FileExistsError:
                pass  # another instance made it first: use theirs
        finally:
            temporary.unlink(missing_ok=True)
    mode = path.stat().st_mode
    if stat.S_IMODE(mode) & 0o077:
        raise ConfigError(f"sources.credentials_key_file: {path} is readable by others "
                          f"(mode {stat.S_IMODE(mode):o}); make it 0600")
    try:
        key = base64.b64decode(path.read_bytes().strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(f"sources.credentials_key_file: {path} does not hold a key "
                          f"({KEY_BYTES} bytes, base64)")
    return key
