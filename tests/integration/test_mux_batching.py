"""The Mux's write batching (`store/mux.py`): held commands (logins') arriving close together
go out together, also when other work runs between them (several loop iterations apart), and
each reply still reaches its own caller; an idle connection writes a held command at once,
and a single caller's commands one after another soon stop being held; a loop that is never
idle still writes every held command; other commands go out at once, behind the held ones."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from sessiongate.store.mux import BATCH_MAX, HOLD, Mux

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


def test_held_commands_arriving_some_iterations_apart_still_share_writes(
        redis_url: str) -> None:
    """As grpc.aio hands a saturated server its requests: a login's take_seat every few loop
    iterations, other work between them. Within `HOLD` of each other they share writes (the
    hold counted in loop turns with new arrivals wrote each alone)."""
    async def body(mux: Mux) -> tuple[list[Any], int]:
        before = mux.writes
        calls = []
        for i in range(200):
            calls.append(asyncio.ensure_future(held_echo(mux, i)))
            for _ in range(3):  # other requests' work
                await asyncio.sleep(0)
        return list(await asyncio.gather(*calls)), mux.writes - before

    got, writes = run(redis_url, body, spin=True)
    assert got == [str(i).encode() for i in range(200)]
    assert writes < 200 // 4


def test_an_idle_connection_writes_at_once_and_one_caller_in_turn_is_soon_not_held(
        redis_url: str) -> None:
    """The first held command of an idle connection is written by `send` itself; a caller
    sending the next only once the last is answered (nothing else in flight) may be held
    twice in all (it came within `HOLD` of the last), never more."""
    async def body(mux: Mux) -> tuple[list[Any], list[bool]]:
        await asyncio.sleep(HOLD * 2)  # the connecting PING is no held command, but be idle
        got, at_once = [], []
        for i in range(10):
            before = mux.writes
            fut = held_echo(mux, i)
            at_once.append(mux.writes == before + 1)  # before any await
            got.append(await fut)
        return got, at_once

    got, at_once = run(redis_url, body)
    assert got == [str(i).encode() for i in range(10)]
    assert at_once[0] and at_once.count(False) <= 2, at_once


def test_a_loop_that_is_never_idle_still_writes_every_held_command(redis_url: str) -> None:
    """A spinning task always has a callback ready: the hold bound writes the commands."""
    async def body(mux: Mux) -> list[Any]:
        return [await held_echo(mux, i) for i in range(20)]

    assert run(redis_url, body, spin=True) == [str(i).encode() for i in range(20)]


def test_a_command_not_held_goes_out_at_once_behind_the_held_ones(redis_url: str) -> None:
    """Held commands queued (the first of an idle connection is written at once, the others
    came right after it: held), then one that is not: one write at once, carrying the held
    ones in order, so every reply still goes to its own caller."""
    async def body(mux: Mux) -> tuple[list[Any], int, int, int]:
        before = mux.writes
        held = [held_echo(mux, i) for i in range(4)]
        queued = mux.writes - before
        direct = mux.send(mux.encode(["EVAL", ECHO, 0, "direct"]))
        written = mux.writes - before  # before any await: written by the calls themselves
        got = [*await asyncio.gather(*held), await direct]
        return got, queued, written, mux.writes - before

    got, queued, written_at_once, writes = run(redis_url, body, spin=True)
    assert got == [b"0", b"1", b"2", b"3", b"direct"]
    assert queued == 1 and written_at_once == 2 and writes == 2


def test_a_connection_lost_with_commands_held_fails_them_and_the_next_call_works(
        redis_url: str) -> None:
    """Held commands not written yet when the connection drops fail with ConnectionError
    (never sent later on another connection); the next call reconnects."""
    async def body(mux: Mux) -> tuple[list[Any], Any]:
        first = mux.send(mux.encode(["INCR", "held:lost"]), hold=True)  # idle: written
        before = mux.writes
        held = [asyncio.ensure_future(mux.send(mux.encode(["INCR", "held:lost"]), hold=True))
                for _ in range(3)]  # right after it: held
        proto = mux._proto
        assert proto is not None and mux.writes == before  # queued, not written
        proto.connection_lost(None)
        got = await asyncio.gather(first, *held, return_exceptions=True)
        return got, await mux.call("INCR", "held:lost")

    got, after = run(redis_url, body)
    assert all(isinstance(g, RedisConnectionError) for g in got), got  # the first: in flight
    assert after <= 2  # the first may have run, none of the three held
