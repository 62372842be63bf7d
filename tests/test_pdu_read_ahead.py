"""The DUL's read-ahead buffer (node/dimse/fastpath/pdu_read_ahead.py) on a socket pair: PDUs
come out whole and in order however the bytes were cut on the way, a body larger than the buffer
is read past it, and a peer that closes between PDUs or inside one is told apart from data."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from node.dimse.fastpath.pdu_read_ahead import PduReader


def pdu(pdu_type: int, body: bytes) -> bytes:
    return struct.pack(">BBL", pdu_type, 0, len(body)) + body


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def read_pdus(reader: PduReader, sock: socket.socket, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        header = reader.read(sock, 6)
        assert header is not None
        length = struct.unpack(">L", header[2:6])[0]
        body = reader.read(sock, length)
        assert body is not None
        out.append(bytes(header + body))
    return out


@pytest.mark.parametrize("cut", [1, 5, 7, 4096, 1 << 20])
def test_pdus_come_out_whole_however_the_bytes_were_cut(
        pair: tuple[socket.socket, socket.socket], cut: int) -> None:
    left, right = pair
    sent = [pdu(4, bytes([n]) * n * 37) for n in range(1, 40)] + [pdu(5, b"\0" * 4)]
    data = b"".join(sent)

    def send() -> None:
        for start in range(0, len(data), cut):
            left.sendall(data[start:start + cut])

    sender = threading.Thread(target=send)
    sender.start()
    reader = PduReader(capacity=1024)
    assert read_pdus(reader, right, len(sent)) == sent
    sender.join()
    assert not reader.pending


def test_pdus_that_arrived_together_are_read_with_one_receive(
        pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    sent = [pdu(4, b"command" * 10), pdu(4, b"data set" * 100)]
    left.sendall(b"".join(sent))
    reader = PduReader()
    assert read_pdus(reader, right, 1) == sent[:1]
    assert reader.pending  # the second PDU is in memory: the DUL does not wait on the socket
    right.setblocking(False)  # a receive now would raise BlockingIOError
    assert read_pdus(reader, right, 1) == sent[1:]
    assert not reader.pending


def test_a_body_larger_than_the_buffer_is_read_past_it(
        pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    big = pdu(4, bytes(range(256)) * 1000)
    sent = [pdu(4, b"small"), big, pdu(6, b"\0" * 4)]
    threading.Thread(target=left.sendall, args=(b"".join(sent),)).start()
    assert read_pdus(PduReader(capacity=4096), right, 3) == sent


def test_a_peer_closing_between_pdus_or_inside_one_gives_none(
        pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    whole = pdu(4, b"x" * 100)
    left.sendall(whole + whole[:50])
    left.close()
    reader = PduReader(capacity=64)
    assert read_pdus(reader, right, 1) == [whole]
    header = reader.read(right, 6)
    assert header is not None
    assert reader.read(right, 100) is None  # cut short inside the body

    other_left, other_right = socket.socketpair()
    other_left.sendall(whole)
    other_left.close()
    reader = PduReader()
    assert read_pdus(reader, other_right, 1) == [whole]
    assert reader.read(other_right, 6) is None  # closed between two PDUs
    other_right.close()
