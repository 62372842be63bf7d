"""Dataset subclasses made by the thousand on the C-FIND and C-MOVE paths, without the cost of
pydicom's Dataset.__init__ and element assignment.

pynetdicom's service classes take only `Dataset` objects from handlers, so a pre-encoded C-FIND
identifier and a stored file to send are Dataset subclasses. `Dataset()` costs 15-50 us and each
element assigned by keyword another 20-100 us (the value is validated), as much as the rest of a
C-FIND match. Here the state of an empty Dataset is copied (its containers made fresh, as
__init__ makes them) and elements are put in as raw bytes, which pydicom converts only if
something reads them.
"""

from __future__ import annotations

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

_EMPTY_STATE = dict(Dataset().__dict__)


def init_empty(ds: Dataset) -> None:
    """Give `ds` (not yet initialised) the state Dataset.__init__ would give it."""
    state = ds.__dict__
    state.update(_EMPTY_STATE)
    for name, value in _EMPTY_STATE.items():
        if isinstance(value, dict):
            state[name] = dict(value)


def put_uid(ds: Dataset, tag: int, uid: str) -> None:
    """Set a UI element as raw little endian bytes (converted by pydicom when read)."""
    value = uid.encode("ascii")
    if len(value) % 2:
        value += b"\0"
    ds._dict[Tag(tag)] = RawDataElement(Tag(tag), "UI", len(value), value, 0, True, True)
