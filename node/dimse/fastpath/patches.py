"""The record of what the fast path replaced in pynetdicom and pydicom, so that an install that
fails half-way puts every original back (node/dimse/fastpath/installer.py)."""

from __future__ import annotations

from typing import Any


class Patches:
    """Attributes replaced on classes and modules, in order, with their originals."""

    def __init__(self) -> None:
        self._replaced: list[tuple[Any, str, Any]] = []

    def replace(self, owner: Any, name: str, value: Any) -> None:
        """Set `owner.name` to `value`, keeping the original to undo."""
        if not hasattr(owner, name):
            # A name this version does not have: the patch was written for another one.
            raise AttributeError(f"{getattr(owner, '__name__', owner)!r} has no {name!r}")
        self._replaced.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def undo(self) -> None:
        """Put every original back, the last replaced first."""
        while self._replaced:
            owner, name, original = self._replaced.pop()
            setattr(owner, name, original)

    def __len__(self) -> int:
        return len(self._replaced)
