"""What an import has finished, so that running the same import again resumes where it stopped.

One journal per argument list (a hash of the resolved paths names it), in
`<data_dir>/import-journal/`.
A line is written once a file is durably in the index (imported, or already there), so after an
interruption at worst the last few files are read again and come back as duplicates. Each line
holds the path with its size and modification time: a file changed since is imported again.
Rejected files are not recorded, so that a fixed file is tried again on the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO


def _key(path: str, stat: os.stat_result) -> tuple[str, int, int]:
    return (path, stat.st_size, stat.st_mtime_ns)


class ImportJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._done: set[tuple[str, int, int]] = set()
        self._out: TextIO | None = None
        if path.exists():
            with path.open(encoding="utf-8") as lines:
                for line in lines:
                    try:
                        name, size, mtime = json.loads(line)
                    except (ValueError, TypeError):
                        continue  # a line cut short by a crash
                    self._done.add((str(name), int(size), int(mtime)))

    @classmethod
    def for_arguments(cls, data_dir: Path, arguments: Iterable[Path]) -> ImportJournal:
        """The journal of an import of exactly these paths, in any order."""
        resolved = sorted({str(p.resolve()) for p in arguments})
        digest = hashlib.sha256("\n".join(resolved).encode("utf-8", "surrogateescape"))
        return cls(data_dir / "import-journal" / f"{digest.hexdigest()[:24]}.jsonl")

    def __len__(self) -> int:
        return len(self._done)

    def is_done(self, path: str, stat: os.stat_result) -> bool:
        return _key(path, stat) in self._done

    def record(self, path: str, stat: os.stat_result) -> None:
        key = _key(path, stat)
        if key in self._done:
            return
        if self._out is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._out = self.path.open("a", encoding="utf-8", errors="surrogateescape")
        self._out.write(json.dumps(list(key)) + "\n")
        # Flushed to the OS, not fsynced: a lost line only costs reading that file again.
        self._out.flush()
        self._done.add(key)

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
