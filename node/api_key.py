"""The API key: from node.toml, or generated once and kept in the data directory.

The node never ships a default key: a fresh installation makes a random one at first start and
prints it once, so that it can be copied into the calling system's configuration.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from node.config import Config

KEY_FILE = "api_key"


def load_or_create_api_key(config: Config) -> tuple[str, bool]:
    """The API key and whether it was generated just now."""
    if config.api.servlet_authorization_header:
        return config.api.servlet_authorization_header, False
    path = config.data_dir / KEY_FILE
    if path.exists():
        return path.read_text(encoding="ascii").strip(), False
    config.data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    _write_private(path, key)
    return key, True


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
