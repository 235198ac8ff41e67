"""Session nonces cut from one random read: each 12 random bytes' URL-safe text, never one
twice (across reads, threads and a fork)."""

from __future__ import annotations

import base64
import os
import re
from concurrent.futures import ThreadPoolExecutor

from sessiongate.domain import sessions
from sessiongate.domain.sessions import NONCES_PER_READ, new_session


def test_nonces_are_twelve_random_bytes_as_url_safe_text_across_reads() -> None:
    nonces = [new_session("a", "b").nonce for _ in range(3 * NONCES_PER_READ + 5)]
    assert len(set(nonces)) == len(nonces)
    for nonce in nonces:
        assert re.fullmatch(r"[A-Za-z0-9_-]{16}", nonce)
        assert len(base64.urlsafe_b64decode(nonce)) == 12


def test_threads_never_share_a_nonce() -> None:
    def draw(_: int) -> list[str]:
        return [new_session("a", "b").nonce for _ in range(2 * NONCES_PER_READ)]

    with ThreadPoolExecutor(8) as pool:
        drawn = [n for got in pool.map(draw, range(8)) for n in got]
    assert len(set(drawn)) == len(drawn) == 16 * NONCES_PER_READ


def test_a_forked_child_draws_its_own_nonces() -> None:
    new_session("a", "b")  # the parent holds nonces it has not handed out
    kept = list(sessions._nonces)
    assert kept
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the nonces it would hand out next
        os.close(read)
        os.write(write, "".join(new_session("a", "b").nonce for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as got:
        child = got.read()
    os.waitpid(pid, 0)
    drawn = [child[i:i + 16] for i in range(0, 48, 16)]
    assert len(drawn) == 3 and not set(drawn) & set(kept)


def test_session_ids_are_url_safe_base64_of_account_user_and_nonce() -> None:
    for account, user in (("a", "b"), ("acme corp", "alice@acme"), ("\u00e9t\u00e9", "?>~"),
                          ("x" * 61, "y" * 7)):
        ref = new_session(account, user)
        raw = f"{account}\x1f{user}\x1f{ref.nonce}".encode()
        assert ref.session_id == base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
