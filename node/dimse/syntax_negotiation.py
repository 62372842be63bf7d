"""Which transfer syntax the node accepts on storage contexts, as C-STORE SCP and as C-GET SCP
(an EVT_REQUESTED handler, the same with or without the fast path).

As a C-STORE SCP the node stores files as received, so it takes the requester's first proposed
syntax that it supports: the requester knows its files, and pynetdicom's own rule (the acceptor's
first supported syntax, Implicit VR Little Endian) would make senders convert every file.

As a C-GET SCP:

A C-GET requester proposes its storage contexts when it associates, before the node knows what
it will send, usually one context per SOP class with several syntaxes (DCMTK's getscu +xy:
JPEG Baseline, then the uncompressed ones). pynetdicom would take the node's own first syntax
(Implicit VR Little Endian) whenever offered, so stored JPEG files would have to be decompressed;
taking the requester's first choice instead would make every uncompressed file of that SOP class
undeliverable (the node does not compress). So the node picks, in the requester's order, a syntax
its files of that SOP class are stored in, then an uncompressed one, then the requester's first.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from pydicom.uid import UID

log = logging.getLogger(__name__)

# Reads the pairs indexed after a row id: [(SOP class, syntax, highest row id)].
LoadSince = Callable[[int], list[tuple[str, str, int]]]


class StoredSyntaxes:
    """The (SOP class, transfer syntax) pairs the index holds, kept up to date incrementally:
    each look-up reads only the rows added since the last one. Deleted instances may leave a
    pair behind, which only costs a conversion later."""

    def __init__(self, load_since: LoadSince) -> None:
        self._load_since = load_since
        self._lock = threading.Lock()
        self._pairs: set[tuple[str, str]] = set()
        self._last_id = 0

    def pairs(self) -> set[tuple[str, str]]:
        with self._lock:
            try:
                for sop_class, ts, row_id in self._load_since(self._last_id):
                    self._pairs.add((sop_class, ts))
                    self._last_id = max(self._last_id, row_id)
            except Exception:
                log.exception("could not read the stored transfer syntaxes")
            return set(self._pairs)


class SyntaxPreference:
    """The EVT_REQUESTED handler that orders, for this association only, the transfer syntaxes
    of each supported context the requester proposes, before pynetdicom negotiates: pynetdicom
    accepts, per context, the first syntax of the acceptor's list that the requester proposed,
    so the order set here is the choice (the module docstring says which). The requester's
    order is the order of first appearance over its contexts of one SOP class."""

    def __init__(self, load_since: LoadSince) -> None:
        self._stored = StoredSyntaxes(load_since)

    def __call__(self, event: Any) -> None:
        assoc = event.assoc
        request = assoc.requestor.primitive
        if request is None or assoc.is_rejected or assoc.is_aborted:
            return
        proposed: dict[str, list[str]] = {}
        for cx in request.presentation_context_definition_list:
            order = proposed.setdefault(str(cx.abstract_syntax), [])
            order += [str(ts) for ts in cx.transfer_syntax if ts not in order]
        # The classes the requester asks to receive as SCP: the node sends them (C-GET).
        sending = {str(uid) for uid, item in assoc.requestor.role_selection.items()
                   if item.scp_role}
        pairs: set[tuple[str, str]] | None = None
        contexts = assoc.acceptor.supported_contexts
        for cx in contexts:
            sop_class = str(cx.abstract_syntax)
            if sop_class not in proposed:
                continue
            ours = set(cx.transfer_syntax)
            candidates = [ts for ts in proposed[sop_class] if ts in ours]
            if not candidates:
                continue
            if sop_class in sending:
                if pairs is None:
                    pairs = self._stored.pairs()
                stored = {ts for uid, ts in pairs if uid == sop_class}
                candidates = sending_order(candidates, stored)
            cx.transfer_syntax = [UID(ts) for ts in candidates]
        assoc.acceptor.supported_contexts = contexts


def sending_order(candidates: list[str], stored: set[str]) -> list[str]:
    """The syntaxes of a C-GET storage context in the order the node prefers them: those its
    files of the SOP class are stored in, then uncompressed ones, then the rest, each in the
    requester's order: pynetdicom accepts the first."""
    first = [ts for ts in candidates if ts in stored]
    then = [ts for ts in candidates if ts not in stored and not UID(ts).is_compressed]
    return first + then + [ts for ts in candidates if ts not in first and ts not in then]
