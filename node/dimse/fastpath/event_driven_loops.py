"""Event-driven association loops for pynetdicom 3.0.4, in place of its polling ones (part of the
fast path, node/dimse/fastpath/installer.py).

pynetdicom runs two threads per association that poll: the DUL thread sleeps `_run_loop_delay`
(1 ms) whenever it finds nothing to do, and the association thread sleeps 1 ms on every turn.
A C-STORE crosses three of those sleeps (request in, hand-over to the handler, response out),
so an SCP answering over one association spends most of its time asleep: measured here, a bare
pynetdicom SCP took ~4.3 ms per small instance, of which the handler ran well under 1 ms.
Lowering the delays instead would make every idle association spin on a CPU.

Here each thread blocks until there is work: the DUL thread in `select` on its socket plus a
wake-up pipe that is written whenever the association queues a primitive to send (or asks the
thread to stop), the association thread on an event set whenever a DIMSE message or an ACSE
primitive is queued for it. Both still wake every IDLE_WAIT seconds to look at their timers.
The loop bodies and the state machine are pynetdicom's own, but for a peer that breaks the
protocol and for connections that carry no association: an A-ASSOCIATE-RQ is checked against
PS3.8 before pynetdicom decodes it, and a malformed one, or a PDU longer than the node accepts,
is aborted with one log line (`_read_pdu_data`); an acceptor's connection that will carry no
association (closed or aborted before a request, or its request refused) is closed at once
rather than after acse_timeout (`_end_unestablished`). On an acceptor a C-STORE request is
served by the DUL thread that received it, without the hand-over (`_ServingQueue` says when
and why).

The protocol limits above are promises of the README: with the fast path off the node keeps them
in front of pynetdicom's own loops (node/dimse/pdu_guard.py). The loop itself (a DUL thread that
waits in `select` on its socket and a wake-up pipe, an association thread that waits on an event)
touches nothing the node does: it is the part written to be offered to pynetdicom as it is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import ssl
import struct
import threading
import weakref
from collections.abc import Callable
from typing import Any, cast

from pynetdicom import association, dul, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import A_ABORT_RQ, P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA

from node.dimse.associate_rq import Malformed, check_associate_rq
from node.dimse.fastpath.patches import Patches
from node.dimse.fastpath.pdu_read_ahead import PduReader
from node.dimse.fastpath.store_receiver import ProtocolError, StoreReceiver
from node.dimse.pdu_guard import LONGEST_CONTROL_PDU
from node.dimse.peer_text import peer_address, printable

log = logging.getLogger(__name__)

# How often an idle thread looks at its timers (ARTIM, network idle timeout): these only need
# to fire within a fraction of a second of their deadline.
IDLE_WAIT = 0.05


class _WakingQueue(queue.Queue[Any]):
    """A queue that tells its consumer's thread that something arrived."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake()


class _ServingQueue(_WakingQueue):
    """An acceptor's DIMSE message queue, fed by its DUL thread. A C-STORE request that arrives
    while the association thread has nothing to do is served right here, in the DUL thread
    that decoded it, instead of being handed over: the wake-up of the association thread was
    a tenth of the node's CPU when ingesting small instances (py-spy: the futex wake in
    Event.set, with the GIL held), and the handover a wait on every instance. The peer waits
    for the response before it sends anything else (no asynchronous operations window), so the
    DUL thread has nothing else to do meanwhile. Requests that may be cancelled (C-FIND,
    C-MOVE, C-GET) and anything arriving while the association thread serves go through the
    queue as before, in order."""

    def __init__(self, assoc: Any, wake: Callable[[], None]) -> None:
        super().__init__(wake)
        self._assoc = weakref.ref(assoc)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        context_id, primitive = item
        assoc = self._assoc()
        if (
            type(primitive) is C_STORE
            and assoc is not None
            and primitive.MessageIDBeingRespondedTo is None
            and not assoc._node_serving
            and self.empty()
            and assoc.is_established
            and threading.current_thread() is assoc.dul
        ):
            assoc._node_dul_serving = True
            try:
                assoc._serve_request(primitive, context_id)
            finally:
                assoc._node_dul_serving = False
                cast(Any, assoc.dul)._idle_timer.restart()
            return
        super().put(item, block, timeout)


def encode_p_data(primitive: P_DATA) -> bytes:
    """A P-DATA-TF PDU (PS3.8 9.3.5) as bytes: what P_DATA_TF(primitive).encode() returns,
    without its per-field objects and repeated copies of the fragment (C-MOVE of 512x512 CT
    sends 32 such PDUs per instance to a peer taking 16 KiB PDUs)."""
    parts = []
    for context_id, value in primitive.presentation_data_value_list:
        parts.append(_PDV_HEADER.pack(len(value) + 1, context_id))
        parts.append(value)
    body = b"".join(parts)
    return _PDU_HEADER.pack(0x04, 0x00, len(body)) + body


_PDU_HEADER = struct.Struct(">BBL")
_PDV_HEADER = struct.Struct(">LB")
# PS3.8 9.3: A-ASSOCIATE-RQ/AC/RJ, P-DATA-TF, A-RELEASE-RQ/RP, A-ABORT.
_PDU_TYPES = frozenset(range(0x01, 0x08))
_PDU_NAMES = {0x01: "A-ASSOCIATE-RQ", 0x02: "A-ASSOCIATE-AC", 0x03: "A-ASSOCIATE-RJ",
              0x04: "P-DATA-TF", 0x05: "A-RELEASE-RQ", 0x06: "A-RELEASE-RP", 0x07: "A-ABORT"}


def _close_pipe(read_fd: int, write_fd: int) -> None:
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):
            os.close(fd)


class EventDrivenDUL(dul.DULServiceProvider):
    """The DICOM Upper Layer thread, sleeping in `select` instead of a fixed delay."""

    def __init__(self, assoc: Any) -> None:
        self._kill_flag = False
        self._waiting = False
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        weakref.finalize(self, _close_pipe, self._wake_read, self._wake_write)
        # Held while the thread runs a state machine action and while another thread sends
        # P-DATA itself (see send_pdu), so that PDUs leave in the order they were issued.
        self._send_lock = threading.Lock()
        super().__init__(assoc)
        self._store_receiver = StoreReceiver(assoc)
        self._reader = PduReader()
        self._longest_data: int | None = None  # once established (_longest_pdu)
        self.to_provider_queue = _WakingQueue(self.wake)
        # The socket queues Evt17 here when a send from another thread fails.
        self.event_queue = _WakingQueue(self.wake)

    def send_pdu(self, primitive: Any) -> None:
        """P-DATA issued by another thread while the association is established (Sta6) and
        nothing is queued ahead of it goes straight to the socket, which is all the state
        machine would do with it (DT-1). Queueing it instead wakes this thread, and each
        wake-up hands it the GIL: measured here, ~30% of a C-FIND answering 1,000 matches."""
        if type(primitive) is P_DATA and threading.current_thread() is not self:
            with self._send_lock:
                if (
                    self.state_machine.current_state == "Sta6"
                    and self.to_provider_queue.empty()
                    and self.socket is not None
                ):
                    if self.assoc.get_handlers(evt.EVT_PDU_SENT):
                        self._send(P_DATA_TF(primitive))  # someone wants the PDU object
                    else:
                        self.socket.send(encode_p_data(primitive))
                    return
        super().send_pdu(primitive)

    # pynetdicom stops the thread by setting this flag from other threads: wake it as well.
    @property
    def _kill_thread(self) -> bool:
        return self._kill_flag

    @_kill_thread.setter
    def _kill_thread(self, value: bool) -> None:
        self._kill_flag = value
        if value:
            self.wake()

    def wake(self) -> None:
        # Only a thread parked in select needs the pipe: a busy one looks at its queue before
        # parking (see _wait_for_work), and every write hands the GIL to this thread for nothing.
        if not self._waiting and not self._kill_flag:
            return
        # OSError: the pipe is full (a wake-up is pending anyway) or already closed.
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"\0")

    def _wait_for_work(self) -> None:
        # Announce the wait before the last look at the queue: a primitive queued after that
        # look finds _waiting set and writes to the pipe.
        self._waiting = True
        try:
            if self.to_provider_queue.empty():
                self._select()
        finally:
            self._waiting = False

    def _select(self) -> None:
        if self._reader.pending:  # a PDU received already: no wait
            return
        fds: list[Any] = [self._wake_read]
        transport = self.socket
        sock = getattr(transport, "socket", None)
        if sock is not None and getattr(transport, "_is_connected", False):
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                return
            fds.append(sock)
        try:
            ready, _, _ = select.select(fds, [], [], IDLE_WAIT)
        except (OSError, ValueError):
            # A socket closed under us: let the loop notice it (Evt17) without spinning.
            threading.Event().wait(0.001)
            return
        if self._wake_read in ready:
            try:
                while os.read(self._wake_read, 4096):
                    pass
            except OSError:
                pass

    def _is_transport_event(self) -> bool:
        """pynetdicom's, for a PDU still in the read-ahead buffer as well."""
        if self._reader.pending:
            self._read_pdu_data()
            return True
        return bool(super()._is_transport_event())

    def _longest_pdu(self, pdu_type: int) -> int:
        if pdu_type != 0x04:
            return LONGEST_CONTROL_PDU
        if self._longest_data is None:
            assoc = self.assoc
            if not assoc.is_established:  # no data before the association
                return LONGEST_CONTROL_PDU
            local = assoc.acceptor if assoc.is_acceptor else assoc.requestor
            # PS3.8 D.1: the announced Maximum Length bounds the P-DATA-TF PDU's variable
            # field, its length; 0 (or none) announces no limit. Fixed once negotiated.
            self._longest_data = local.maximum_length or 0xFFFFFFFF
        return self._longest_data

    def _read_pdu_data(self) -> None:
        """Read one PDU, as pynetdicom does but through the read-ahead buffer
        (pdu_read_ahead.py). A P-DATA-TF PDU arriving in Sta6 with nothing queued ahead
        of it is first offered to the C-STORE receiver (store_receiver.py); what it
        does not take is decoded as before."""
        sock = getattr(self.socket, "socket", None)
        if sock is None:
            self.event_queue.put("Evt17")  # closed
            return
        header = bytearray()
        try:
            received = self._reader.read(sock, 6)
            if received is None:
                self.event_queue.put("Evt17")  # closed between two PDUs
                return
            header = received
            pdu_type, _, length = _PDU_HEADER.unpack(header)
            if pdu_type not in _PDU_TYPES:
                log.error("unknown PDU type 0x%02X received", pdu_type)
                self.event_queue.put("Evt19")
                return
            if length > (longest := self._longest_pdu(pdu_type)):
                log.error("a PDU of %d bytes received, longer than the %d accepted", length,
                          longest)
                self.event_queue.put("Evt19")
                return
            body = self._reader.read(sock, length)
        except (OSError, TimeoutError):
            body = None
        if body is None:
            log.error("connection closed before the entire PDU was received")
            self.event_queue.put("Evt17")
            return
        if (
            pdu_type == 0x04
            and self.state_machine.current_state == "Sta6"
            and self.event_queue.empty()
        ):
            with self._send_lock:
                if self._store_receiver.receive(body):
                    return
        try:
            if pdu_type == 0x01:
                check_associate_rq(bytes(body))
            pdu, event = self._decode_pdu(header + body)
            if pdu_type == 0x01:
                pdu.to_primitive()  # what the state machine does next, raising there
        except Exception as exc:
            # One line: these are the peer's bytes, not the node's bug (node/dimse/
            # associate_rq.py), and a traceback per malformed PDU let a peer flood the log.
            why = str(exc) if isinstance(exc, Malformed) else f"{type(exc).__name__}: {exc}"
            log.error("malformed %s PDU from %s, aborting: %s", _PDU_NAMES[pdu_type],
                      peer_address(self.assoc), printable(why))
            self.event_queue.put("Evt19")
            return
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)

    def run_reactor(self) -> None:
        """pynetdicom's DUL loop, waiting in `_wait_for_work` when idle."""
        try:
            self._reactor_loop()
        finally:
            self._store_receiver.discard()

    def _reactor_loop(self) -> None:
        self._idle_timer.start()
        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
            if self._kill_thread:
                break
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")
            try:
                # pynetdicom's look at the queue raises IndexError when it is empty, which it
                # is on almost every turn.
                if self.to_provider_queue.queue and self._process_recv_primitive():
                    pass
                elif self._is_transport_event():
                    self._idle_timer.restart()
            except Exception as exc:
                if isinstance(exc, ProtocolError):  # the peer's fault: one line says it
                    log.error("aborting the association: %s", exc)
                else:
                    log.error("exception in the DUL reactor, aborting the association")
                    log.exception(exc)
                abort_pdu = A_ABORT_RQ()
                abort_pdu.source = 0x02
                abort_pdu.reason_diagnostic = 0x00
                if self.socket is not None:
                    self.socket.send(abort_pdu.encode())
                self.assoc.is_aborted = True
                self.assoc.is_established = False
                self.assoc._kill = True
                self._kill_thread = True
                return
            # Only this thread takes events: one seen here is still there for get().
            if not self.event_queue.queue:
                self._wait_for_work()
                continue
            event = self.event_queue.get(block=False)
            with self._send_lock:
                state = self.state_machine.current_state
                self.state_machine.do_action(event)
            if state in ("Sta2", "Sta3") and self.state_machine.current_state not in (
                    "Sta3", "Sta6"):
                self._end_unestablished(state)

    def _end_unestablished(self, state: str) -> None:
        """An acceptor's connection that will carry no association ends now: the peer closed
        or aborted before asking for one (a port probe, a load balancer's health check), its
        request was malformed (A-ABORT sent) or rejected (A-ASSOCIATE-RJ sent). pynetdicom
        would wait for the peer to close, up to acse_timeout (the ARTIM timer), and while it
        waits for a request that cannot come the connection counts among the open associations:
        forty malformed requests kept every slot of the node taken for 30 s. The A-ABORT or
        A-ASSOCIATE-RJ has been written to the socket already; the peer reads it before the
        end of the stream."""
        transport = self.socket
        if transport is not None and transport.socket is not None:
            transport.close()  # Evt17: Sta13 -> Sta1
        if state == "Sta2":
            # What the association thread gets when its wait for the request times out.
            self.to_user_queue.put(None)  # type: ignore[arg-type]


class _Checkpoint(threading.Event):
    """The association's pause checkpoint: a user thread that clears it (to send a request
    itself) then spins until the loop is parked on it, so clearing must wake the loop."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake = wake

    def clear(self) -> None:
        super().clear()
        self._wake()


_original_assoc_init = association.Association.__init__


def _assoc_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _original_assoc_init(self, *args, **kwargs)
    self._wakeup = threading.Event()
    # Whether the association thread serves a request, or the DUL thread one (_ServingQueue).
    self._node_serving = False
    self._node_dul_serving = False
    self.dimse.msg_queue = (_ServingQueue(self, self._wakeup.set) if self.is_acceptor
                            else _WakingQueue(self._wakeup.set))
    self.dul.to_user_queue = _WakingQueue(self._wakeup.set)
    checkpoint = _Checkpoint(self._wakeup.set)
    if self._reactor_checkpoint.is_set():
        checkpoint.set()
    self._reactor_checkpoint = checkpoint


def _assoc_run_reactor(self: Any) -> None:
    """pynetdicom's association loop, waiting on `_wakeup` instead of sleeping 1 ms a turn."""
    self._is_paused = False
    wakeup: threading.Event = self._wakeup
    while not self._kill:
        wakeup.clear()
        # Nothing to do, and no caller waiting for the loop to pause (clearing the checkpoint
        # sets `wakeup` too, but it may have done so before the clear() above).
        if (
            self.dimse.msg_queue.empty()
            and self.dul.to_user_queue.empty()
            and self._reactor_checkpoint.is_set()
        ):
            wakeup.wait(IDLE_WAIT)
        # Callers of send_*() pause the loop here so that it does not take their responses:
        # they clear the checkpoint and go on once _is_paused is set. A caller that clears it
        # again right after setting it (its next request) may still see _is_paused from the
        # last pause while this thread is already on its way out of wait(): so announce
        # leaving first, then look once more, and park again if the checkpoint is cleared.
        while True:
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False
            if self._reactor_checkpoint.is_set():
                break

        # Announced before the look at the queue: the DUL thread serves a C-STORE itself only
        # while this thread neither serves nor is about to (_ServingQueue).
        self._node_serving = True
        try:
            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._serve_request(msg, context_id)
        finally:
            self._node_serving = False

        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            self.is_released = True
            self.is_established = False
            association.evt.trigger(self, association.evt.EVT_RELEASED, {})
            self.kill()
            return

        if self.acse.is_aborted():
            self.dul.receive_pdu(wait=False)
            self.is_aborted = True
            self.is_established = False
            association.evt.trigger(self, association.evt.EVT_ABORTED, {})
            self.kill()
            return

        if not self.dul.is_alive():
            self.kill()
            return

        if self.dul.idle_timer_expired() and not self._node_dul_serving:
            log.error("network timeout reached")
            if self.network_timeout_response == "A-RELEASE":
                self._is_paused = True
                self._reactor_checkpoint.wait()
                self.release()
                self._is_paused = False
            else:
                self.abort()
            self.kill()
            return


def patch(patches: Patches) -> None:
    """Swap in the event-driven loops."""
    patches.replace(association, "DULServiceProvider", EventDrivenDUL)
    patches.replace(association.Association, "__init__", _assoc_init)
    patches.replace(association.Association, "_run_reactor", _assoc_run_reactor)
