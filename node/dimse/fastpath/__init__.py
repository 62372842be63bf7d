"""The DIMSE fast path: every replacement of pynetdicom's and pydicom's internals, fenced
(installer.py says how)."""

from node.dimse.fastpath.installer import SUPPORTED, install, installed, patch_targets
from node.dimse.fastpath.store_receiver import receive_into

__all__ = ["SUPPORTED", "install", "installed", "patch_targets", "receive_into"]
