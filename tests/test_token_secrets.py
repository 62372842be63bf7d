"""Token secrets: 256 fresh bits from `secrets` each, never handed out twice, also when they
are drawn from the system in batches (node/viewing/tokens.py) and across threads and forks."""

from __future__ import annotations

import os
import threading

from node.viewing.tokens import POOL_TOKENS, looks_like_token, new_token


def test_tokens_are_64_hex_characters_and_all_different() -> None:
    tokens = [new_token() for _ in range(POOL_TOKENS * 5 + 3)]
    assert all(looks_like_token(token) for token in tokens)
    assert len(set(tokens)) == len(tokens)


def test_threads_never_share_a_token() -> None:
    drawn: list[list[str]] = [[] for _ in range(4)]

    def draw(into: list[str]) -> None:
        into.extend(new_token() for _ in range(POOL_TOKENS * 2))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [token for tokens in drawn for token in tokens] + [new_token()]
    assert len(set(every)) == len(every)


def test_a_forked_child_draws_other_tokens_than_its_parent() -> None:
    new_token()  # the pool holds tokens the parent has not handed out yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next tokens, then out without running pytest's teardown
        os.write(write, "".join(new_token() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    child = {text[i:i + 64] for i in range(0, len(text), 64)}
    parent = {new_token() for _ in range(POOL_TOKENS)}
    assert len(child) == 3 and not child & parent
