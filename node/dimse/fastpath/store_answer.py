"""C-STORE requests answered by the DUL thread that read them, without pynetdicom's service
class (pynetdicom 3.0.4; part of the fast path, node/dimse/fastpath/installer.py).

Once the store receiver (store_receiver.py) has a request's data set in a file, pynetdicom would
build the request primitive, look up the service class, build a response primitive (two UID
validations per UID), wrap the handler call in an Event and its error handling, check the
status, and unlink the file the handler has moved already: about a tenth of the GIL time per
small instance over four associations (py-spy), on the critical path of every C-STORE. The node's
store SCP handler has a direct form (node/dimse/store_scp.py, DIRECT_FORMS), called with the file
and the sender instead, and the response is written from its values
(message_bytes.send_store_response).

Only where pynetdicom would do exactly that: the association established and not releasing,
nothing queued or served ahead, the SOP class the context's and a storage class, no SOP Class
Common Extended Negotiation or unrestricted storage, no handlers for sent messages or PDUs.
Anything else takes pynetdicom's way, with the same handler.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pynetdicom import _config, evt
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from node.dimse.fastpath import message_bytes
from node.dimse.peer_text import peer_address
from node.dimse.store_scp import DIRECT_FORMS, DirectStore, ReceivedStore

_SENT_HANDLERS = (evt.EVT_DIMSE_SENT, evt.EVT_PDU_SENT, evt.EVT_DATA_SENT)


@functools.cache  # only the abstract syntaxes of accepted contexts get here
def _is_storage_class(uid: str) -> bool:
    return uid_to_service_class(uid) is StorageServiceClass


def _direct_handler(assoc: Any, context_id: int, values: dict[str, Any]
                    ) -> tuple[DirectStore, list[Any]] | None:
    sop_class = values.get("AffectedSOPClassUID")
    context = assoc._accepted_cx.get(context_id)
    if (
        not assoc.is_established
        or assoc._sent_release
        or assoc._node_serving
        or not assoc.dimse.msg_queue.empty()
        or _config.UNRESTRICTED_STORAGE_SERVICE
        or assoc.acceptor.accepted_common_extended
        or context is None
        or context.abstract_syntax != sop_class
        or not isinstance(values.get("MessageID"), int)
        or not str(values.get("AffectedSOPInstanceUID")).isascii()
        or not _is_storage_class(sop_class)
        or any(assoc.get_handlers(event) for event in _SENT_HANDLERS)
    ):
        return None
    bound = assoc.get_handlers(evt.EVT_C_STORE)
    if not isinstance(bound, tuple) or bound[0] not in DIRECT_FORMS:
        return None
    handler, args = bound
    return DIRECT_FORMS[handler], list(args or ())


def answer(assoc: Any, context_id: int, values: dict[str, Any], path: Path, head: bytes,
           size: int, write_error: OSError | None) -> bool:
    """Serve a received C-STORE request here; False (the file untouched) when it is
    pynetdicom's to serve. Called by the association's DUL thread with its send lock held."""
    found = _direct_handler(assoc, context_id, values)
    if found is None:
        return False
    direct, args = found
    request = ReceivedStore(path, assoc.requestor.ae_title,
                            values.get("MoveOriginatorApplicationEntityTitle") or None, head,
                            size, peer_address(assoc), write_error)
    # As for a request served by the DUL thread (event_driven_loops._ServingQueue): the association
    # thread must not take the idle time meanwhile for a network timeout.
    assoc._node_dul_serving = True
    try:
        status, comment = direct(request, *args)
        message_bytes.send_store_response(assoc.dimse, context_id, values["MessageID"],
                                 values["AffectedSOPClassUID"], values["AffectedSOPInstanceUID"],
                                 status, comment)
    finally:
        assoc._node_dul_serving = False
        assoc.dul._idle_timer.restart()
    return True
