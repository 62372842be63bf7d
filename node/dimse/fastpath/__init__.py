"""The DIMSE fast path: every replacement of pynetdicom's and pydicom's internals, fenced
(installer.py says how)."""

from node.dimse.fastpath.installer import SUPPORTED, install, installed, patch_targets

__all__ = ["SUPPORTED", "install", "installed", "patch_targets"]
