"""Scripts.coalesced: concurrent calls of a script share a pipeline, each keeps its answer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from sessiongate.domain.sessions import new_session
from sessiongate.store import keys
from sessiongate.store.client import transport as connect
from sessiongate.store.scripts import Scripts
from sessiongate.store.sessions import SessionStore


def test_concurrent_seat_takes_share_round_trips_and_keep_their_answers(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """60 logins of 60 users at once for 5 seats go out in one pipeline (one connection): 5
    admitted, the others refused, each with its own answer; a call on a key of the wrong
    type fails alone; a cancelled caller leaves the others' answers intact."""
    now = datetime(2026, 10, 10, tzinfo=UTC)
    expires = now + timedelta(minutes=5)
    redis_client.set(keys.seats("broken"), "not a zset")

    async def main() -> tuple[list[Any], list[bool], int, int]:
        client = connect(redis_url)
        scripts = Scripts(client)
        store = SessionStore(client, scripts)
        try:
            refs = [new_session("acme", f"user-{i}") for i in range(60)]
            calls = [asyncio.ensure_future(store.take(r, now, expires, 5)) for r in refs]
            calls.append(asyncio.ensure_future(
                store.take(new_session("broken", "u"), now, expires, 5)))
            doomed = asyncio.ensure_future(store.take(new_session("acme", "late"), now,
                                                      expires, 5))
            await asyncio.sleep(0)  # every call has queued its script: now cancel one
            doomed.cancel()
            results: list[Any] = list(await asyncio.gather(*calls,
                                                              return_exceptions=True))
            # one pipeline needs one connection; 61 separate EVALSHAs in flight would open ~61
            connections = len(redis_client.client_list()) - 1  # less this sync client
            again = await asyncio.gather(*(store.take(r, now, expires, 5) for r in refs[:10]))
            return (results, [a.admitted for a in again], await store.seats_held("acme", now),
                    connections)
        finally:
            await client.aclose()

    results, again, held, connections = asyncio.run(main())
    assert connections <= 3
    answers = results[:60]
    assert all(not isinstance(a, BaseException) for a in answers)
    late = redis_client.zscore(keys.seats("acme"), "late") is not None  # its script may run
    assert held == 5
    assert sum(1 for a in answers if a.admitted) == 5 - late
    assert isinstance(results[60], redis.exceptions.ResponseError)
    assert "WRONGTYPE" in str(results[60])
    assert again == [a.admitted for a in answers[:10]]  # holders renew, others


def test_ended_leases_are_dropped_now_and_then_and_never_count(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """take_seat.lua drops ended leases on the calls whose nonce's last byte is 0 mod 8
    ('H': 72), not on the others ('A': 65); an ended seat left in the set is not held: its
    user must take a seat again, under the limit."""
    from sessiongate.domain.sessions import SessionRef

    t0 = datetime(2026, 10, 10, tzinfo=UTC)
    lease = timedelta(minutes=5)
    later = t0 + 2 * lease  # every lease of t0 has ended

    def ref(user: str, last: str) -> SessionRef:
        nonce = f"nonce-{user}-{last}"
        return SessionRef("acme", user, nonce, f"id-{user}-{last}")  # the id is not read

    async def main() -> list[tuple[bool, int]]:
        client = connect(redis_url)
        store = SessionStore(client, Scripts(client))
        try:
            out = [await store.take(ref("alice", "A"), t0, t0 + lease, 1)]
            out.append(await store.take(ref("bob", "A"), later, later + lease, 1))  # no prune
            members = set(redis_client.zrange(keys.leases("acme"), 0, -1))
            assert members == {b"alice", b"alice\x1fnonce-alice-A", b"bob",
                               b"bob\x1fnonce-bob-A"}
            # alice's ended seat is still there, not hers any more: bob holds the only one.
            out.append(await store.take(ref("alice", "A"), later, later + lease, 1))
            assert await store.seats_held("acme", later) == 1
            out.append(await store.take(ref("bob", "H"), later, later + lease, 1))  # prunes
            return [(r.admitted, r.seats_held) for r in out]
        finally:
            await client.aclose()

    assert asyncio.run(main()) == [(True, 1), (True, 1), (False, 1), (True, 1)]
    assert set(redis_client.zrange(keys.leases("acme"), 0, -1)) == {
        b"bob", b"bob\x1fnonce-bob-A", b"bob\x1fnonce-bob-H"}
