"""C-MOVE and C-GET sub-operations that send a stored file as it is (pynetdicom 3.0.4; part of
the fast path, node/dimse/fastpath/installer.py).

pynetdicom's move/get service classes take only `Dataset` objects from the handler and hand them
to `Association.send_c_store`, which re-encodes any Dataset. `StoredFileDataset` is a two-element
Dataset naming a stored file (node/dimse/retrieve.py yields it); the wrapped `send_c_store` turns
it back into the path, and message_bytes.send_stored_file writes its command and PDUs from the
file's bytes. Where the peer accepted no context with the file's own syntax, the file goes
decoded through pynetdicom's own send_c_store (FileToSend.payload_for).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pynetdicom.association import Association

from node.dimse.fastpath.light_dataset import init_empty, put_uid
from node.dimse.fastpath.message_bytes import send_stored_file
from node.dimse.fastpath.patches import Patches

if TYPE_CHECKING:
    from node.dimse.retrieve import FileToSend


class StoredFileDataset(Dataset):
    """A stored instance to send as it is: SOP Class/Instance UIDs plus the file to send."""

    stored: FileToSend

    def __init__(self, stored: FileToSend) -> None:
        # Made for every file a C-MOVE/C-GET sends: the pydicom way (Dataset(), validated
        # UIDs) cost 0.1-0.5 ms each.
        init_empty(self)
        put_uid(self, 0x00080016, stored.sop_class)
        put_uid(self, 0x00080018, stored.sop_uid)
        self.__dict__["stored"] = stored


def patch(patches: Patches) -> None:
    """Let `Association.send_c_store` take a StoredFileDataset."""
    original = Association.send_c_store

    def send_c_store(self: Association, dataset: Any, msg_id: int = 1, priority: int = 2,
                     originator_aet: str | None = None, originator_id: int | None = None,
                     ) -> Dataset:
        if isinstance(dataset, StoredFileDataset):
            dataset = dataset.stored.payload_for(self)
            if isinstance(dataset, Path):
                status = send_stored_file(self, dataset, msg_id, priority, originator_aet,
                                          originator_id)
                if status is not None:
                    return status
        return original(self, dataset, msg_id, priority, originator_aet, originator_id)

    patches.replace(Association, "send_c_store", send_c_store)
