"""Session nonces cut from one random read: a filler, then 15 random URL-safe base64
characters, never one twice (across reads, threads and a fork); session ids made from encoded
parts, the same text as the whole encoded at once."""

from __future__ import annotations

import base64
import os
import re
from concurrent.futures import ThreadPoolExecutor

from sessiongate.domain import sessions
from sessiongate.domain.sessions import NONCES_PER_READ, new_session, parse_session_id


def session_id(account: str, user: str, nonce: str) -> str:
    """The id format encoded at once: base64url of `account US user US nonce`, unpadded."""
    raw = f"{account}\x1f{user}\x1f{nonce}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_nonces_are_90_random_bits_as_url_safe_text_across_reads() -> None:
    nonces = [new_session("a", "b").nonce for _ in range(3 * NONCES_PER_READ + 5)]
    assert len(set(nonces)) == len(nonces)
    for nonce in nonces:  # "a US b US": 4 bytes, so 2 filler characters make 6
        assert re.fullmatch(r"__[A-Za-z0-9_-]{15}", nonce)
        assert len(base64.urlsafe_b64decode(nonce[2:] + "=")) == 11  # 90 bits, 2 spare
    cores = {n[2:] for n in nonces}
    # Every character of the alphabet turns up in every position: random, not a pattern.
    for i in range(15):
        assert len({c[i] for c in cores}) > 50


def test_threads_never_share_a_nonce() -> None:
    def draw(_: int) -> list[str]:
        return [new_session("a", "b").nonce for _ in range(2 * NONCES_PER_READ)]

    with ThreadPoolExecutor(8) as pool:
        drawn = [n for got in pool.map(draw, range(8)) for n in got]
    assert len(set(drawn)) == len(drawn) == 16 * NONCES_PER_READ


def test_a_forked_child_draws_its_own_nonces() -> None:
    new_session("a", "b")  # the parent holds nonces it has not handed out
    if not sessions._nonces:  # that draw took the last of a read: the next read refills
        new_session("a", "b")
    kept = ["__" + core for core, _ in sessions._nonces]
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
    drawn = [child[i:i + 17] for i in range(0, 51, 17)]
    assert len(drawn) == 3 and not set(drawn) & set(kept)


def test_session_ids_are_url_safe_base64_of_account_user_and_nonce() -> None:
    """Of every length of `account US user US` modulo 3 (the filler's three cases), ids made
    from encoded parts are the whole encoded at once, parse back, and are unpadded."""
    for account, user in (("a", "b"), ("acme corp", "alice@acme"), ("\u00e9t\u00e9", "?>~"),
                          ("x" * 61, "y" * 7), ("ab", "c"), ("abc", "d"), ("abcd", "e")):
        for _ in range(2):  # made, then from the kept prefix
            ref = new_session(account, user)
            assert ref.session_id == session_id(account, user, ref.nonce)
            assert "=" not in ref.session_id
            assert parse_session_id("session_id", ref.session_id) == ref
    assert {len(f"{a}\x1f{u}\x1f".encode()) % 3 for a, u in (("ab", "c"), ("abc", "d"),
                                                              ("abcd", "e"))} == {0, 1, 2}


def test_the_kept_prefixes_are_bounded() -> None:
    sessions._prefixes.clear()
    for i in range(sessions.MAX_PREFIXES + 10):
        sessions._prefix("acme", f"user-{i}")
    assert len(sessions._prefixes) <= sessions.MAX_PREFIXES
    ref = new_session("acme", "user-1")  # emptied and refilled: still the right id
    assert ref.session_id == session_id("acme", "user-1", ref.nonce)
