"""STOW-RS bodies of declared length, read whole and split in memory (rest/dicomweb/stow_body.py):
the layouts RFC 2046 allows are stored byte-identical to what was sent, the ones it does not
are refused naming the problem with nothing stored, and a body cut short by the client stores
nothing."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

from rest.dicomweb import stow
from rest.dicomweb.stow import WholeBodyBudget
from tests.peers import NodeProcess
from tests.rest_support import API_KEY, running_app
from tests.test_dicomweb_stow import (
    BOUNDARY,
    as_read,
    datasets,
    encoded,
    post,
    spec,
    stored_bytes,
    stored_in,
    stored_row,
)

CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
DASH = f"--{BOUNDARY}".encode()


def instances(number: int, count: int = 2) -> list[bytes]:
    """`count` instances of study `number`, as their Part 10 bytes."""
    return [encoded(ds) for ds in datasets(spec(number), count)]


def layout(parts: list[bytes], head: bytes = b"Content-Type: application/dicom\r\n",
           preamble: bytes = b"", epilogue: bytes = b"", padding: bytes = b"",
           dash: bytes = DASH) -> bytes:
    """A body of `parts`, each with `head` (its header lines), the boundary lines carrying
    `padding` (transport padding before their CRLF)."""
    out = preamble
    for data in parts:
        out += dash + padding + b"\r\n" + head + b"\r\n" + data + b"\r\n"
    return out + dash + b"--" + padding + epilogue


def sop_uid(data: bytes) -> str:
    return str(pydicom.dcmread(pydicom.filebase.DicomBytesIO(data)).SOPInstanceUID)


def holding(number: int, text: str) -> bytes:
    """An instance of study `number` whose data holds `text` (in its Image Comments)."""
    ds = datasets(spec(number), 1)[0]
    ds.ImageComments = text
    return encoded(as_read(ds))


def with_boundary_text() -> list[bytes]:
    """An instance whose data holds the boundary text, never after CRLF (only a CRLF before
    it makes a delimiter): after a letter, after a bare LF and after a bare CR."""
    data = holding(63, f"x{DASH.decode()}\n{DASH.decode()}--\r{DASH.decode()} end")
    assert data.count(DASH) == 3 and b"\r\n" + DASH not in data
    return [data]


def with_content_length(parts: list[bytes]) -> bytes:
    """Each part declares its Content-Length: with the length known, a delimiter inside the
    data is data."""
    out = b""
    for data in parts:
        out += (DASH + b"\r\nContent-Type: application/dicom\r\nContent-Length: "
                + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n")
    return out + DASH + b"--\r\n"


LAYOUTS: dict[str, tuple[int, Callable[[list[bytes]], bytes]]] = {
    "preamble-and-epilogue": (60, lambda parts: layout(
        parts, preamble=b"a preamble line\r\nand another\r\n",
        epilogue=b"\r\nan epilogue\r\n" + DASH + b"\r\n\r\nnot a part\r\n")),
    "no-leading-crlf-nor-trailing": (61, lambda parts: layout(parts)),
    "leading-crlf-as-clients-write": (62, lambda parts: b"\r\n" + layout(parts)),
    "boundary-text-inside-data": (63, lambda parts: layout(parts)),
    "part-without-headers": (64, lambda parts: layout(parts, head=b"")),
    "transport-padding": (65, lambda parts: layout(parts, padding=b" \t ")),
    "header-names-any-case": (66, lambda parts: layout(
        parts, head=b"content-TYPE:application/dicom\r\nContent-Location: ignored\r\n")),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_a_well_formed_layout_is_stored_byte_identical(node: NodeProcess, name: str) -> None:
    number, build = LAYOUTS[name]
    parts = with_boundary_text() if number == 63 else instances(number)
    response = post(node, build(parts))
    assert response.status_code == 200, response.text
    for data in parts:
        assert stored_bytes(node, sop_uid(data)) == data


def test_a_quoted_boundary_with_separators_in_it(node: NodeProcess) -> None:
    boundary = "a b:c=d;e,f"
    parts = instances(67)
    data = layout(parts, dash=f"--{boundary}".encode())
    response = post(node, data, content_type=f'multipart/related; boundary="{boundary}"; '
                                             f'type="application/dicom"')
    assert response.status_code == 200, response.text
    for part in parts:
        assert stored_bytes(node, sop_uid(part)) == part


def test_a_part_with_content_length_may_hold_the_delimiter(node: NodeProcess) -> None:
    parts = [holding(68, f"before\r\n{DASH.decode()}\r\nafter"), *instances(68, 2)[1:]]
    assert b"\r\n" + DASH + b"\r\n" in parts[0]
    response = post(node, with_content_length(parts))
    assert response.status_code == 200, response.text
    for data in parts:
        assert stored_bytes(node, sop_uid(data)) == data


@pytest.mark.parametrize(("build", "named"), [
    (lambda parts: layout(parts).replace(b"\r\n", b"\n"), "CRLF"),
    (lambda parts: layout(parts)[:-len(DASH) - 2], "not closed"),
    (lambda parts: layout(parts, head=b"Content-Type application/dicom\r\n"),
     "invalid header line"),
    (lambda parts: layout(parts, head=b"Content-Type: application/dicom\nX: y\r\n"),
     "invalid header line"),
    (lambda parts: layout(parts, head=b"Content-Length: 12\r\n"), "Content-Length"),
    (lambda parts: layout(parts, head=b"Content-Length: -1\r\n"), "Content-Length"),
    (lambda parts: layout(parts, padding=b"x"), "CRLF"),
    (lambda parts: layout(parts, head=b"X: " + b"y" * 9000 + b"\r\n"), "header line"),
    (lambda parts: layout(parts, head=b"X: y\r\n" * 129), "header lines"),
], ids=["lf-line-endings", "no-close-delimiter", "header-without-colon", "bare-lf-in-header",
        "content-length-short", "content-length-negative", "text-after-boundary",
        "header-too-long", "too-many-headers"])
def test_a_malformed_body_is_400_naming_the_problem_with_nothing_stored(
        node: NodeProcess, build: Callable[[list[bytes]], bytes], named: str) -> None:
    parts = instances(69, 1)
    response = post(node, build(parts))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "malformed multipart body after part 0" in error and named in error
    assert stored_row(node, sop_uid(parts[0])) is None


def test_a_malformed_part_after_good_ones_keeps_them(node: NodeProcess) -> None:
    """As with a streamed body: the parts before the fault are stored and counted."""
    good = instances(70, 2)
    data = layout(good) + b"\r\n"
    data = data[:data.rindex(DASH)] + DASH + b"\r\nbroken header\r\n\r\nx\r\n" + DASH + b"--"
    response = post(node, data)
    assert response.status_code == 400, response.text
    assert "after part 2" in response.json()["error"]
    assert "2 part(s) before it stored" in response.json()["error"]
    for part in good:
        assert stored_bytes(node, sop_uid(part)) == part


def test_a_body_cut_short_by_the_client_stores_nothing(node: NodeProcess) -> None:
    parts = instances(71, 3)
    data = layout(parts)
    address = node.http_url.split("//")[1]
    head = (f"POST /dicom-web/studies HTTP/1.1\r\nHost: {address}\r\n"
            f"Authorization: {node.api_key}\r\nContent-Type: {CONTENT_TYPE}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    host, port = address.rsplit(":", 1)
    before = node.log_text().count("STOW-RS body ended early")
    with socket.create_connection((host, int(port)), timeout=30) as client:
        # Two whole parts and half of the third, then the client goes away.
        client.sendall(head + data[:len(data) - len(parts[2]) // 2])
    deadline = time.monotonic() + 30
    while node.log_text().count("STOW-RS body ended early") == before:
        assert time.monotonic() < deadline, "the node never saw the body end early"
        time.sleep(0.05)
    for part in parts:
        assert stored_row(node, sop_uid(part)) is None
    assert [p for p in (node.data_dir / "incoming").rglob("*") if p.is_file()] == []
    # And the node serves on.
    assert post(node, layout(parts)).status_code == 200


async def test_bodies_beyond_the_process_budget_are_streamed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many uploads at once hold no more than WHOLE_BODIES_BYTES of bodies in memory: with the
    budget taken by others, a body is streamed through incoming/ and stored all the same; the
    budget a body took is given back, also when the body ended early."""
    class Watched(WholeBodyBudget):
        answers: list[bool]

        def take(self, size: int) -> bool:
            taken = super().take(size)
            self.answers.append(taken)
            return taken
    budget = Watched(1 << 20)
    budget.answers = []
    monkeypatch.setattr(stow, "WHOLE_BODIES", budget)
    parts = instances(31)
    data = layout(parts)
    headers = {"Authorization": API_KEY, "Content-Type": CONTENT_TYPE}
    async with running_app(tmp_path / "app") as api:
        budget.held = budget.limit - len(data) + 1  # one byte short: streamed
        response = await api.client.post("/dicom-web/studies", data=data, headers=headers)
        assert response.status == 200, await response.text()
        assert budget.answers == [False] and budget.held == budget.limit - len(data) + 1
        budget.held = 0  # room again: held whole, and given back
        response = await api.client.post("/dicom-web/studies", data=layout(instances(32)),
                                         headers=headers)
        assert response.status == 200, await response.text()
        assert budget.answers == [False, True] and budget.held == 0
        index = api.services.config.data_dir
        assert all(stored_in(index, sop_uid(part)) for part in parts)
