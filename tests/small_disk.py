"""A small file system of its own for a test, to fill for real: a tmpfs mounted on a folder (the
tests run as root; where mounting is not allowed the test is skipped)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """`folder` (made if missing) on a tmpfs of `size` ("1m", "24m") until the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                              str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here (the tests run as root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def fill(folder: Path, room: int) -> Path:
    """A file in `folder` that takes all the free space of its file system but about `room`
    bytes; delete it to give the space back."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        chunk = b"\0" * (1 << 20)
        left = shutil.disk_usage(folder).free - room
        while left > 0:
            try:
                left -= os.write(fd, chunk[:left])
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    finally:
        os.close(fd)
    assert shutil.disk_usage(folder).free <= room + 4096
    return filler
