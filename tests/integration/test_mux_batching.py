"""The Mux's write batching (`store/mux.py`): held commands (logins') queued while the event
loop is busy go out together and each reply still reaches its own caller; an idle loop, or a
loop that is never idle, still writes every held command; other commands go out at once,
behind the held ones."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from sessiongate.store.mux import BATCH_MAX, Mux

ECHO = "return ARGV[1]"


async def busy(stop: asyncio.Event) -> None:
    """Always a callback ready: the loop is never idle while this runs."""
    while not stop.is_set():
        await asyncio.sleep(0)


def run(redis_url: str, body: Callable[[Mux], Awaitable[Any]], spin: bool = False) -> Any:
    """`body(mux)` on a connected Mux of a fresh client; `spin`: with the loop kept busy."""
    async def main() -> Any:
        mux = Mux(redis_url, socket_timeout=2.0)
        stop = asyncio.Event()
        spinner = asyncio.ensure_future(busy(stop)) if spin else None
        try:
            await mux.call("PING")  # connected
            async with asyncio.timeout(10):  # a command never written would hang the test
                return await body(mux)
        finally:
            stop.set()
            if spinner is not None:
                await spinner
            await mux.aclose()
    return asyncio.run(main())


def held_echo(mux: Mux, value: Any) -> Awaitable[Any]:
    return mux.send(mux.encode(["EVAL", ECHO, 0, value]), hold=True)


def test_held_commands_of_a_busy_loop_share_writes_and_keep_their_replies(
        redis_url: str) -> None:
    """One held call per loop iteration while another task keeps the loop busy: fewer
    writes than calls, at least one per BATCH_MAX, and every caller gets its own echo."""
    async def body(mux: Mux) -> tuple[list[Any], int]:
        before = mux.writes
        calls = []
        for i in range(300):
            calls.append(asyncio.ensure_future(held_echo(mux, i)))
            await asyncio.sleep(0)  # the next call in the next iteration
        return list(await asyncio.gather(*calls)), mux.writes - before

    got, writes = run(redis_url, body, spin=True)
    assert got == [str(i).encode() for i in range(300)]
    assert 300 // BATCH_MAX <= writes < 300 // 2


def test_an_idle_loop_writes_a_held_command_at_once(redis_url: str) -> None:
    async def body(mux: Mux) -> tuple[list[Any], list[int]]:
        got, writes = [], []
        for i in range(5):
            got.append(await held_echo(mux, i))
            writes.append(mux.writes)
        return got, writes

    got, writes = run(redis_url, body)
    assert got == [b"0", b"1", b"2", b"3", b"4"]
    assert writes == [writes[0] + i for i in range(5)]  # one write per call


def test_a_loop_that_is_never_idle_still_writes_every_held_command(redis_url: str) -> None:
    """A spinning task always has a callback ready: the hold bound writes the commands."""
    async def body(mux: Mux) -> list[Any]:
        return [await held_echo(mux, i) for i in range(20)]

    assert run(redis_url, body, spin=True) == [str(i).encode() for i in range(20)]


def test_a_command_not_held_goes_out_at_once_behind_the_held_ones(redis_url: str) -> None:
    """Held commands queued, then one that is not: one write at once, carrying all of them
    in order, so every reply still goes to its own caller."""
    async def body(mux: Mux) -> tuple[list[Any], int, int]:
        before = mux.writes
        held = [asyncio.ensure_future(held_echo(mux, i)) for i in range(3)]
        direct = mux.send(mux.encode(["EVAL", ECHO, 0, "direct"]))
        written = mux.writes - before  # before any await: written by the call itself
        got = [*await asyncio.gather(*held), await direct]
        return got, written, mux.writes - before

    got, written_at_once, writes = run(redis_url, body, spin=True)
    assert got == [b"0", b"1", b"2", b"direct"]
    assert written_at_once == 1 and writes == 1


def test_a_connection_lost_with_commands_held_fails_them_and_the_next_call_works(
        redis_url: str) -> None:
    """Held commands not written yet when the connection drops fail with ConnectionError
    (never sent later on another connection); the next call reconnects."""
    async def body(mux: Mux) -> tuple[list[Any], Any]:
        before = mux.writes
        held = [asyncio.ensure_future(mux.send(mux.encode(["INCR", "held:lost"]), hold=True))
                for _ in range(3)]
        proto = mux._proto
        assert proto is not None and mux.writes == before  # queued, not written
        proto.connection_lost(None)
        got = await asyncio.gather(*held, return_exceptions=True)
        return got, await mux.call("INCR", "held:lost")

    got, after = run(redis_url, body)
    assert all(isinstance(g, RedisConnectionError) for g in got), got
    assert after == 1  # none of the three ran
