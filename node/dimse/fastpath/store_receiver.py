"""C-STORE requests read from their P-DATA-TF PDUs straight into a file (pynetdicom 3.0.4; part of
the fast path, node/dimse/fastpath/installer.py).

For every PDU pynetdicom builds a PDU object with an item object per fragment, runs its state
machine (DT-2), turns the PDU into a P-DATA primitive and feeds that to a DIMSEMessage, which
opens a NamedTemporaryFile for a C-STORE data set and flushes it after each fragment: with the
command set and file meta already read from bytes (command_set_reader.py, file_meta.py), that was
still about a fifth of the DUL thread's time per small instance (py-spy, four associations).

Here a PDU whose message is a C-STORE request is read fragment by fragment instead: the command
set by the command reader, the data set appended to a file in incoming/ behind the same File
Meta Information pynetdicom writes. The finished request is offered to the handler's direct
form (store_answer.py), which answers it in this thread; failing that it is put on the
association's DIMSE queue as pynetdicom puts it (the same primitive, `_dataset_path` set).
A file that cannot be written (a full disk) is deleted at once; the rest of its data set is
read and dropped, and the request goes the same way with the error (received_write_error), to
be answered with a failure status instead of an A-ABORT. Nothing changes state:
P-DATA in Sta6 leaves the state machine in Sta6. Every other message, a PDU the state machine
has something queued ahead of, and every association with handlers for received data, PDUs or
DIMSE messages go pynetdicom's way; so does a command set this reader does not know.
"""

from __future__ import annotations

import itertools
import os
import secrets
import struct
import tempfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

from pynetdicom import _config, evt
from pynetdicom.pdu_primitives import P_DATA

from node.dimse.fastpath.command_set_reader import (
    CommandSet,
    Unknown,
    build_primitive,
    read_command_set,
)
from node.dimse.fastpath.file_meta import file_meta_bytes
from node.dimse.store_scp import HEAD_ATTRIBUTE, WRITE_ERROR_ATTRIBUTE
from node.ingest.header_scan import HEAD_BYTES

_PDV_HEADER = struct.Struct(">LB")
_C_STORE_RQ = 0x0001
_NO_DATA_SET = 0x0101
_PREAMBLE = b"\x00" * 128 + b"DICM"
# Data set bytes gathered before a write: a small instance costs one write, a CT a few.
WRITE_BUFFER = 1 << 20
_MAX_PARTS = 512  # well under IOV_MAX (1024 on Linux)
_RECEIVE_HANDLERS = (evt.EVT_DATA_RECV, evt.EVT_PDU_RECV, evt.EVT_DIMSE_RECV)

_enabled = False
# (association, context ID, command values, file, its first bytes, its size, the error that
# stopped its writing) -> True when it answered the request itself
# (store_answer.py), else pynetdicom serves it.
Answer = Callable[[Any, int, dict[str, Any], Path, bytes, int, OSError | None], bool]
_answer: Answer | None = None
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_serial = itertools.count()
_prefix = ""  # of this process's received files' names


def _new_prefix() -> None:
    global _prefix
    _prefix = f"{os.getpid()}-{secrets.token_hex(4)}-"


_new_prefix()
os.register_at_fork(after_in_child=_new_prefix)  # a forked worker names its own files


class ProtocolError(Exception):
    """A PDU that breaks the fragment rules of PS3.8 Annex E; the association is aborted."""


def enable_store_receive(answer: Answer | None = None) -> None:
    """Read C-STORE requests here from now on (once the command set reader is in: the installer
    calls this), offering each finished one to `answer` before pynetdicom."""
    global _enabled, _answer
    _enabled = True
    _answer = answer


class _ReceivedFile:
    """Where pynetdicom keeps the NamedTemporaryFile of a received data set: after the handler
    it closes and deletes that file, so that a handler which did not take it (the node's own
    move it on, node/ingest/ingestor.py) leaves nothing behind. The file here is closed already."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def close(self) -> None:
        """Closed when its last fragment was written."""


# Where received C-STORE data sets are written: the node's incoming/ (receive_into), so that
# placing them in storage is a link on one file system.
_incoming_folder: str | None = None


def receive_into(folder: str) -> None:
    """Received data sets go to `folder` from now on, in this process (the node's SCP and the
    SCU's receivers call it before they serve)."""
    global _incoming_folder
    _incoming_folder = folder


def _create_incoming() -> tuple[int, str]:
    """A new file in the node's incoming/ (receive_into), named by process, a random tag and
    a serial number. mkstemp draws eight random characters and resolves the folder for every
    name: about 5 us of the GIL's time more per file."""
    folder = _incoming_folder or tempfile.gettempdir()
    while True:
        name = f"{folder}/{_prefix}{next(_serial)}.dcm"
        try:
            return os.open(name, _CREATE, 0o600), name
        except FileExistsError:
            continue


class _IncomingFile:
    """A received data set's file, written with one writev per WRITE_BUFFER bytes of fragments:
    a Python file object costs an fstat and an lseek to open, and a copy of every fragment."""

    __slots__ = ("_fd", "_parts", "_pending")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._parts: list[bytes | memoryview] = []
        self._pending = 0

    def write(self, data: bytes | memoryview) -> None:
        self._parts.append(data)
        self._pending += len(data)
        if self._pending >= WRITE_BUFFER or len(self._parts) >= _MAX_PARTS:
            self._flush()

    def close(self) -> None:
        """Write what is gathered, then close; the file is closed even when the write fails."""
        if self._fd < 0:
            return
        try:
            self._flush()
        finally:
            self._release()

    def abandon(self) -> None:
        self._parts.clear()
        self._release()

    def _release(self) -> None:
        """Close the descriptor once: closed twice, its number may by then be another
        thread's file."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def _flush(self) -> None:
        parts = self._parts
        while parts:
            written = os.writev(self._fd, parts)
            while parts and written >= len(parts[0]):
                written -= len(parts.pop(0))
            if written:  # a short write inside a part: the rest of it first
                parts[0] = memoryview(parts[0])[written:]
        self._pending = 0


class StoreReceiver:
    """One association's C-STORE request in progress, fed with the bodies of P-DATA-TF PDUs by
    its DUL thread (event_driven_loops.py), with the DUL's send lock held as for DT-2."""

    def __init__(self, assoc: Any) -> None:
        self._assoc = assoc
        self._command: CommandSet | None = None
        self._context_id = 0
        self._file: _IncomingFile | None = None
        self._path: Path | None = None
        # The file's first bytes, for the header scan (received_head).
        self._head = bytearray()
        self._size = 0
        self._write_error: OSError | None = None  # the data set's file could not be written

    def receive(self, body: bytes | bytearray) -> bool:
        """Read this PDU's fragments; False (nothing read) when it is pynetdicom's to decode."""
        if self._command is None and not self._applies():
            return False
        view = memoryview(body)
        offset = 0
        while offset < len(view):
            if len(view) - offset < 6:
                raise ProtocolError("a presentation data value shorter than its header")
            length, context_id = _PDV_HEADER.unpack_from(view, offset)
            start, stop = offset + 6, offset + 4 + length
            if length < 1 or stop > len(view):
                raise ProtocolError("a presentation data value longer than its PDU")
            control = view[offset + 5]
            if self._command is None:
                started = control & 3 == 3 and self._start(bytes(view[start:stop]), context_id)
                if not started:
                    if offset == 0:
                        return False
                    self._hand_over(view[offset:])
                    return True
            elif control & 1 or context_id != self._context_id:
                raise ProtocolError("a command fragment inside a C-STORE data set")
            else:
                self._write(view[start:stop])
                missing = HEAD_BYTES - len(self._head)
                if missing > 0:
                    self._head += view[start:min(stop, start + missing)]
                if control & 2:
                    self._finish()
            offset = stop
        return True

    def discard(self) -> None:
        """The association ended in the middle of a data set: its file goes."""
        if self._file is not None:
            self._file.abandon()
        if self._path is not None:
            self._path.unlink(missing_ok=True)
        self._command = self._file = self._path = self._write_error = None

    def _write(self, fragment: bytes | memoryview) -> None:
        self._size += len(fragment)
        if self._file is None:  # writing failed: the rest of the data set is dropped
            return
        try:
            self._file.write(fragment)
        except OSError as exc:
            self._drop(exc)

    def _drop(self, error: OSError) -> None:
        """The file cannot be written (a full disk, no descriptor left): it goes now, not at
        the next start, and the request is answered with `error` when its data set is read."""
        self._write_error = error
        if self._file is not None:
            self._file.abandon()
            self._file = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)

    def _applies(self) -> bool:
        assoc = self._assoc
        return (
            _enabled
            and _config.STORE_RECV_CHUNKED_DATASET
            and assoc.dimse.message is None
            and not any(assoc.get_handlers(event) for event in _RECEIVE_HANDLERS)
        )

    def _start(self, command: bytes, context_id: int) -> bool:
        """Open the file of a C-STORE request whose command set is `command`; False for any
        other message, which pynetdicom then decodes."""
        try:
            command_set = read_command_set(command)
        except Unknown:
            return False
        values = command_set.values
        context = self._assoc._accepted_cx.get(context_id)
        sop_class = values.get("AffectedSOPClassUID")
        sop_instance = values.get("AffectedSOPInstanceUID")
        if (
            values.get("CommandField") != _C_STORE_RQ
            or values.get("CommandDataSetType", _NO_DATA_SET) == _NO_DATA_SET
            or context is None
            or not isinstance(sop_class, str)
            or not isinstance(sop_instance, str)
        ):
            return False
        self._command = command_set
        self._context_id = context_id
        self._head = bytearray(_PREAMBLE)
        self._head += file_meta_bytes(sop_class, sop_instance, context.transfer_syntax[0])
        self._size = 0
        try:
            fd, name = _create_incoming()
        except OSError as exc:
            self._path = Path(str(exc.filename))
            self._drop(exc)
            return True
        self._path = Path(name)
        self._file = _IncomingFile(fd)
        self._write(bytes(self._head))
        return True

    def _finish(self) -> None:
        command, path, file = self._command, self._path, self._file
        assert command is not None and path is not None
        if file is not None:
            try:
                file.close()
            except OSError as exc:
                self._drop(exc)
        error, context_id = self._write_error, self._context_id
        self._command = self._file = self._path = self._write_error = None
        head = bytes(self._head)
        if _answer is not None and _answer(self._assoc, context_id, command.values, path, head,
                                           self._size, error):
            return
        request = build_primitive("C_STORE_RQ", command, BytesIO(), context_id)
        request._dataset_path = path
        request._dataset_file = _ReceivedFile(str(path))
        setattr(request, HEAD_ATTRIBUTE, head)
        setattr(request, WRITE_ERROR_ATTRIBUTE, error)
        self._assoc.dimse.msg_queue.put((context_id, request))

    def _hand_over(self, rest: memoryview) -> None:
        """The fragments after a finished request, starting another message: to pynetdicom's
        DIMSE provider, as DT-2 hands it a P-DATA primitive."""
        primitive = P_DATA()
        values: list[Any] = []  # lists, not tuples: the setter checks
        offset = 0
        while offset < len(rest):
            length, context_id = _PDV_HEADER.unpack_from(rest, offset)
            values.append([context_id, bytes(rest[offset + 5:offset + 4 + length])])
            offset += 4 + length
        primitive.presentation_data_value_list = values
        self._assoc.dimse.receive_primitive(primitive)

