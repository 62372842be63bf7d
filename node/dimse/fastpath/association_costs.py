"""Per-association costs of pynetdicom 3.0.4, cut (part of the fast path,
node/dimse/fastpath/installer.py).

- Every accepted association deep-copies the AE's supported presentation contexts (every
  storage SOP class times every transfer syntax): ~0.15 s of CPU per association here. A copy
  of each context with its own transfer syntax list is all negotiation needs (UIDs are
  immutable strings).
- Every UID a DIMSE primitive is given (the SOP Class and Instance UIDs of each received
  request and of its response) was checked with two regular expressions, pydicom's value
  validation and then its conformance check: ~6% of a received C-STORE's time. A UID that
  passes the one stricter check here passes both, and is stored as pynetdicom stores it.

pynetdicom's association server also runs a full garbage collection (`gc.collect()`) after every
60 accepts or idle polls, against the memory finished associations leave in reference cycles.
The fast path used to remove it (~25 ms holding the GIL each); measured over 20,000 associations
to one worker, without it the worker's memory rose by ~24 MiB over the first ~13,000 before the
interpreter's own thresholds caught up, with it the memory stays flat from the first few
thousand, at ~0.4 ms of CPU per association. So it stays, and the node's worker processes run
it too (node/dimse/shared_listener.py); tests/test_association_memory.py holds the memory flat.
"""

from __future__ import annotations

import copy
from typing import Any

from pydicom.uid import UID
from pynetdicom import dimse_primitives, transport, utils
from pynetdicom.presentation import PresentationContext

from node.dimse.fastpath.patches import Patches
from node.ingest.instance_record import is_valid_uid


def _copy_contexts(value: Any, memo: dict[int, Any] | None = None) -> Any:
    if isinstance(value, list) and all(isinstance(cx, PresentationContext) for cx in value):
        copies = []
        for cx in value:
            new = PresentationContext.__new__(PresentationContext)
            new.__dict__.update(cx.__dict__)
            new._transfer_syntax = list(cx._transfer_syntax)
            copies.append(new)
        return copies
    return copy.deepcopy(value, memo)


_original_set_uid = utils.set_uid


def _set_uid(value: Any, name: str, allow_empty: bool = True, allow_none: bool = True,
             validate: bool = True) -> UID | None:
    """pynetdicom's set_uid, answering a conformant UID without its two validations."""
    kind = type(value)
    if (kind is UID or kind is str) and is_valid_uid(value):
        return value if kind is UID else UID(value)
    return _original_set_uid(value, name, allow_empty, allow_none, validate)


def patch(patches: Patches) -> None:
    """Cheap context copies and UID checks."""
    patches.replace(transport, "deepcopy", _copy_contexts)
    patches.replace(dimse_primitives, "set_uid", _set_uid)
