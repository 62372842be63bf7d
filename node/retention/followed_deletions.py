"""How far this instance has followed the deletion jobs in the database (node/retention/
deletion.py): the id of the last one followed, in its data folder, shared by its workers.

What following a deletion drops belongs to the whole instance (its series metadata folder, every
worker's read cache), so one worker doing it is enough. When every worker followed on its own,
each dropped everything again and the file kept the progress of whichever wrote last, a worker
behind the others too: the next start then followed again deletions followed long before,
dropping the metadata and cached copies of studies received again since.

So a worker follows only in its turn: while it holds an exclusive lock on a file beside the
progress (flock; the kernel lets go when the process dies), starting from the progress the file
holds, whoever wrote it, and writing its own after each step as a new file renamed over the old.
A worker that finds the lock taken leaves its turn: another one is following right then.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# In data_dir: the id of the last deletion job the instance followed, and the lock of the turn.
FOLLOWED_FILE = "deletions-followed"
LOCK_FILE = "deletions-followed.lock"


class FollowingTurn:
    """One worker's turn at following deletions; `seen`: the last deletion job followed."""

    def __init__(self, path: Path, seen: int) -> None:
        self._path = path
        self.seen = seen

    def advance(self, job_id: int) -> None:
        """Record every deletion up to `job_id` as followed (a reader finds the old id or the
        new one, never a part)."""
        temporary = self._path.with_name(f".{self._path.name}.new")
        temporary.write_text(str(job_id))
        os.replace(temporary, self._path)
        self.seen = job_id


class FollowedDeletions:
    """The instance's progress through the deletion jobs, followed by one worker at a time."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FOLLOWED_FILE
        self._lock = data_dir / LOCK_FILE

    @contextmanager
    def turn(self) -> Iterator[FollowingTurn | None]:
        """This worker's turn, from the instance's progress; None while another worker of the
        instance has its turn."""
        fd = os.open(self._lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            yield FollowingTurn(self.path, self.seen())
        finally:
            os.close(fd)  # lets go of the lock

    def seen(self) -> int:
        """The last deletion job the instance followed (0: none yet)."""
        try:
            return int(self.path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0
