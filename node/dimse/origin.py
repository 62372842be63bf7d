"""Where an instance received by C-STORE on the node's SCP came from, as the index records it.

Instances the node retrieves are "retrieve:<sender>" whichever way they arrive: on a C-GET
association or the temporary SCP (node/dimse/scu.py), or, for a C-MOVE while the node is
serving, on the node's own SCP beside every other C-STORE, which are "dicom:<sender>". The
C-MOVE sub-operations are told apart by their Move Originator AE Title (PS3.7 9.1.1.1): the
source names the AE that asked for the move, here the node itself.
"""

from __future__ import annotations


def store_origin(sender: str, move_originator: str | None, own_ae_title: str) -> str:
    """"retrieve:<sender>" for a sub-operation of a C-MOVE this node asked for, else
    "dicom:<sender>"."""
    if move_originator and move_originator.strip() == own_ae_title.strip():
        return f"retrieve:{sender}"
    return f"dicom:{sender}"
