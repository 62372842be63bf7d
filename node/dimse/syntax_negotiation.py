"""Which transfer syntax the node accepts on storage contexts, as C-STORE SCP and as C-GET SCP.

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
from collections.abc import Callable, Iterable
from typing import Any

from pydicom.uid import UID
from pynetdicom import acse
from pynetdicom.presentation import PresentationContext

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


def choose_syntax(
    proposed: Iterable[str], supported: Iterable[str], stored: set[str]
) -> str | None:
    """The syntax to accept for one C-GET storage context (None: leave pynetdicom's choice)."""
    ours = set(supported)
    candidates = [ts for ts in proposed if ts in ours]
    if not candidates:
        return None
    for ts in candidates:
        if ts in stored:
            return ts
    for ts in candidates:
        if not UID(ts).is_compressed:
            return ts
    return candidates[0]


_cache: StoredSyntaxes | None = None


def install_syntax_negotiation(load_since: LoadSince) -> None:
    """Wrap pynetdicom's acceptor negotiation (once per process; the source may be replaced)."""
    global _cache
    first = _cache is None
    _cache = StoredSyntaxes(load_since)
    if not first:
        return
    original = acse.negotiate_as_acceptor

    def negotiate(rq_contexts: list[PresentationContext], ac_contexts: list[PresentationContext],
                  roles: Any = None) -> tuple[list[PresentationContext], list[Any]]:
        result, reply_roles = original(rq_contexts, ac_contexts, roles)
        _prefer_requester_order(result, rq_contexts, ac_contexts)
        get_contexts = [cx for cx in result if cx.result == 0x00 and cx.as_scu]
        if get_contexts and _cache is not None:
            _retune(get_contexts, rq_contexts, ac_contexts, _cache.pairs())
        return result, reply_roles

    acse.negotiate_as_acceptor = negotiate


def _prefer_requester_order(
    accepted: list[PresentationContext],
    rq_contexts: list[PresentationContext],
    ac_contexts: list[PresentationContext],
) -> None:
    """On contexts where the node only receives, accept the requester's first supported choice."""
    proposed = {cx.context_id: cx for cx in rq_contexts}
    # The node supports every storage class with every syntax: a set of syntaxes only for the
    # classes accepted here (building all of them took ~1.5 ms per association).
    supported = {cx.abstract_syntax: cx for cx in ac_contexts}
    for cx in accepted:
        if cx.result != 0x00 or cx.as_scu or cx.context_id not in proposed:
            continue
        ac_context = supported.get(cx.abstract_syntax)
        ours = set(ac_context.transfer_syntax) if ac_context is not None else set()
        for ts in proposed[cx.context_id].transfer_syntax:
            if ts in ours:
                cx.transfer_syntax = [UID(ts)]
                break


def _retune(accepted: list[PresentationContext], rq_contexts: list[PresentationContext],
            ac_contexts: list[PresentationContext], pairs: set[tuple[str, str]]) -> None:
    proposed = {cx.context_id: cx for cx in rq_contexts}
    supported = {cx.abstract_syntax: cx for cx in ac_contexts}
    for cx in accepted:
        if cx.context_id not in proposed or cx.abstract_syntax not in supported:
            continue
        stored = {ts for sop_class, ts in pairs if sop_class == cx.abstract_syntax}
        choice = choose_syntax(proposed[cx.context_id].transfer_syntax,
                               supported[cx.abstract_syntax].transfer_syntax, stored)
        if choice is not None:
            cx.transfer_syntax = [UID(choice)]
