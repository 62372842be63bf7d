"""What C-MOVE and C-GET share: finding the stored files and sending them exactly as stored.

pynetdicom's move/get service classes accept only `Dataset` objects from the handler and pass
them to `Association.send_c_store`, which would decode nothing if given a file path (chunked send)
but re-encodes any Dataset. `StoredFile` is a two-element Dataset naming a stored file; the
wrapped `send_c_store` turns it back into the path, so each sub-operation streams the file from
disk without decoding it. Only when the peer accepted no context with the file's own transfer
syntax is the file read and handed over decoded: pynetdicom converts between uncompressed
syntaxes, and a compressed file is decompressed first when the peer takes only uncompressed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ImplicitVRLittleEndian
from pynetdicom import _config
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext, build_context

from node.dimse.qr_identifier import parse_identifier
from node.index.query import StoredInstanceRef, check_retrieve_keys, find_instances
from node.services import NodeServices

log = logging.getLogger(__name__)

# PS3.8: at most 128 presentation contexts in one association request.
MAX_CONTEXTS = 128


class StoredFile(Dataset):
    """A stored instance to send as it is: SOP Class/Instance UIDs plus the file's path."""

    def __init__(self, path: Path, ref: StoredInstanceRef) -> None:
        super().__init__()
        self.SOPClassUID = ref.sop_class_uid
        self.SOPInstanceUID = ref.sop_uid
        self.stored_path = path
        self.stored_transfer_syntax = ref.transfer_syntax

    def payload_for(self, assoc: Association) -> Path | Dataset:
        """The file's path when a context with its own transfer syntax was accepted (sent
        without decoding), else the decoded dataset for pynetdicom to convert."""
        accepted = _accepted_syntaxes(assoc, str(self.SOPClassUID))
        if _config.STORE_SEND_CHUNKED_DATASET and self.stored_transfer_syntax in accepted:
            return self.stored_path
        dataset = dcmread(self.stored_path)
        if UID(self.stored_transfer_syntax).is_compressed and any(
            not UID(ts).is_compressed for ts in accepted
        ):
            # Same pixel values, same instance: keep its SOP Instance UID.
            dataset.decompress(generate_instance_uid=False)
        return dataset


def _accepted_syntaxes(assoc: Association, sop_class: str) -> set[str]:
    return {
        str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts
        if cx.abstract_syntax == sop_class and cx.as_scu
    }


_installed = False


def install_stored_file_sending() -> None:
    """Let `Association.send_c_store` take a StoredFile (idempotent, process-wide)."""
    global _installed
    if _installed:
        return
    original = Association.send_c_store

    def send_c_store(self: Association, dataset: Any, *args: Any, **kwargs: Any) -> Dataset:
        if isinstance(dataset, StoredFile):
            dataset = dataset.payload_for(self)
        return original(self, dataset, *args, **kwargs)

    Association.send_c_store = send_c_store  # type: ignore[method-assign]
    _installed = True


def presentation_contexts(files: Iterable[StoredFile]) -> list[PresentationContext]:
    """One context per (SOP class, stored transfer syntax), so every file can go out as stored;
    then, room permitting, Implicit VR Little Endian per SOP class, which every SCP accepts, as
    the fallback for uncompressed files whose own syntax the destination refuses."""
    pairs = sorted({(str(f.SOPClassUID), f.stored_transfer_syntax) for f in files})
    if len(pairs) > MAX_CONTEXTS:
        log.warning("%d SOP class/transfer syntax pairs: proposing the first %d",
                    len(pairs), MAX_CONTEXTS)
    contexts = [build_context(sop_class, [ts]) for sop_class, ts in pairs[:MAX_CONTEXTS]]
    fallbacks = sorted({
        sop_class for sop_class, ts in pairs
        if ts != ImplicitVRLittleEndian and not UID(ts).is_compressed
        and (sop_class, ImplicitVRLittleEndian) not in pairs
    })
    room = MAX_CONTEXTS - len(contexts)
    contexts += [build_context(sop_class, [ImplicitVRLittleEndian])
                 for sop_class in fallbacks[:room]]
    return contexts


def matching_files(services: NodeServices, identifier: Dataset, sop_class_uid: str,
                   ) -> list[StoredFile]:
    """The stored files a C-MOVE/C-GET identifier names; InvalidInput for a bad identifier."""
    parsed = parse_identifier(identifier, sop_class_uid)
    request = parsed.request
    check_retrieve_keys(request.level, request.keys)
    refs = services.run_blocking(
        find_instances(services.sessions, request.level, request.keys),
        services.config.dicom.dimse_timeout,
    )
    paths = services.storage.local_paths([ref.path for ref in refs])
    return [StoredFile(path, ref) for path, ref in zip(paths, refs, strict=True)]
