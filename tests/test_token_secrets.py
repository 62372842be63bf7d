"""Token secrets: the issue time, then 192 fresh bits from `secrets` (cookies: 256), never
handed out twice, also when they are drawn from the system in batches
(node/viewing/token_secrets.py) and across threads and forks. Uniqueness is checked on the
random part alone: the time in front would make two tokens differ even if their random bits were
the same."""

from __future__ import annotations

import os
import threading
import time

from node.viewing.token_secrets import (
    POOL_TOKENS,
    digest,
    looks_like_token,
    new_secret,
    new_token,
    token_key,
    token_keys,
)


def secret_part(token: str) -> str:
    return token[16:]


def test_tokens_are_64_hex_characters_and_all_different() -> None:
    tokens = [new_token() for _ in range(POOL_TOKENS * 5 + 3)]
    assert all(looks_like_token(token) for token in tokens)
    assert len({secret_part(token) for token in tokens}) == len(tokens)
    cookies = [new_secret() for _ in range(POOL_TOKENS * 2)]
    assert all(looks_like_token(cookie) for cookie in cookies)
    assert len(set(cookies)) == len(cookies)


def test_a_token_begins_with_its_issue_time_and_so_does_its_key() -> None:
    before = time.time_ns() // 1000
    tokens = [new_token() for _ in range(100)]
    after = time.time_ns() // 1000
    issued = [int(token[:16], 16) for token in tokens]
    assert before <= issued[0] and issued == sorted(issued) and issued[-1] <= after
    keys = [token_key(token) for token in tokens]
    # The key begins with the token's issue time (two tokens of one microsecond share it).
    assert [key[:16] for key in keys] == [token[:16] for token in tokens]
    assert all(len(key) == 64 for key in keys)
    # The key gives nothing of the token's secret part away.
    assert all(secret_part(token) not in key for token, key in zip(tokens, keys, strict=True))
    assert token_keys(tokens[0]) == (keys[0], digest(tokens[0]))


def test_threads_never_share_a_token() -> None:
    drawn: list[list[str]] = [[] for _ in range(4)]

    def draw(into: list[str]) -> None:
        into.extend(secret_part(new_token()) for _ in range(POOL_TOKENS * 2))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [token for tokens in drawn for token in tokens] + [secret_part(new_token())]
    assert len(set(every)) == len(every)


def test_a_forked_child_draws_other_tokens_than_its_parent() -> None:
    new_token()  # the pool holds tokens the parent has not handed out yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next tokens, then out without running pytest's teardown
        os.write(write, "".join(secret_part(new_token()) for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    child = {text[i:i + 48] for i in range(0, len(text), 48)}
    parent = {secret_part(new_token()) for _ in range(POOL_TOKENS)}
    assert len(child) == 3 and not child & parent
