"""The timed dunning sweep: N accounts cross a stage boundary at once; how long until all moved.

In process with a manual clock: N accounts get an invoice due at T0 (through the store and
engine, as the RPCs would), the clock moves past day 1 and sweeps run until nothing is due.
Measured with one sweeping process (`serve`), and with the split of `serve --workers 2`: two
processes, each a `Sweeper` with its share of the buckets (`billing/scheduler.py`), started
together on a fresh copy of the same setup.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import redis as sync_redis

from bench.extras import _direct_setup, inprocess
from sessiongate.store import keys
from sessiongate.store.embedded import EmbeddedRedis

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CROSSED = T0 + timedelta(days=1, seconds=1)  # every account crosses into REMINDER


async def _setup(redis_url: str, ids: list[str]) -> float:
    from sessiongate.service.billing import engine_for

    async with inprocess(redis_url, T0) as (app, _):
        s0 = time.perf_counter()
        await _direct_setup(app.rt, engine_for(app.rt), ids, T0)
        return time.perf_counter() - s0


async def _sweeper(redis_url: str, share: tuple[int, int], ready: Any, go: Any, done: Any
                   ) -> None:
    from sessiongate.app import settle_heap
    from sessiongate.billing.scheduler import Sweeper
    from sessiongate.service.billing import engine_for

    async with inprocess(redis_url, CROSSED) as (app, _):
        settle_heap()  # as `serve` does once started
        rt = app.rt
        sweeper = Sweeper(rt.transport, engine_for(rt), rt.clock, share=share)
        ready.put(share[0])
        go.wait()
        moved = 0
        while (made := await sweeper.sweep_once()) > 0:
            moved += made
        done.put(moved)


def _child(redis_url: str, share: tuple[int, int], ready: Any, go: Any, done: Any) -> None:
    asyncio.run(_sweeper(redis_url, share, ready, go, done))


def _still_due(redis_url: str) -> int:
    client = sync_redis.Redis.from_url(redis_url)
    until = int(CROSSED.timestamp() * 1000)
    return sum(int(client.zcount(keys.due_index(b), "-inf", until)) for b in keys.ALL_BUCKETS)


def _one_run(redis: EmbeddedRedis, n: int, processes: int) -> dict[str, Any]:
    sync_redis.Redis.from_url(redis.url).flushall()
    setup = asyncio.run(_setup(redis.url, [f"sweep-{n}-{i}" for i in range(n)]))
    ctx = mp.get_context("spawn")
    ready, done, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    children = [ctx.Process(target=_child, args=(redis.url, (i, processes), ready, go, done))
                for i in range(processes)]
    for c in children:
        c.start()
    try:
        for _ in children:
            ready.get(timeout=120)
        t0 = time.perf_counter()
        go.set()
        moved = sum(int(done.get(timeout=600)) for _ in children)
        wall = time.perf_counter() - t0
    finally:
        for c in children:
            c.join(timeout=60)
            if c.is_alive():
                c.kill()
    return {"seconds": wall, "transitioned": moved, "still_due": _still_due(redis.url),
            "setup_seconds": setup}


async def _idle_sweep(redis_url: str, n: int) -> float:
    """One sweep with nothing due, over the n accounts left by the last run (ms)."""
    from sessiongate.billing.scheduler import Sweeper
    from sessiongate.service.billing import engine_for

    async with inprocess(redis_url, CROSSED) as (app, _):
        sweeper = Sweeper(app.rt.transport, engine_for(app.rt), app.rt.clock)
        t0 = time.perf_counter()
        made = await sweeper.sweep_once()
        if made:
            raise RuntimeError(f"an idle sweep committed {made} changes")
        return (time.perf_counter() - t0) * 1000


def timed_sweep(redis: EmbeddedRedis, n: int, processes: tuple[int, ...] = (1, 2)
                ) -> dict[str, Any]:
    runs = {p: _one_run(redis, n, p) for p in processes}
    empty_ms = asyncio.run(_idle_sweep(redis.url, n))
    for p, r in runs.items():
        if r["transitioned"] != n or r["still_due"]:
            raise RuntimeError(f"{p} process(es): {r['transitioned']} of {n} transitioned,"
                               f" {r['still_due']} still due")
    def label(p: int) -> str:
        return "one process" if p == 1 else f"{p} processes (`serve --workers {p}`' split)"

    timings = "; ".join(f"{label(p)} {r['seconds']:.2f} s ({n / r['seconds']:,.0f}/s)"
                        for p, r in runs.items())
    best = min(r["seconds"] for r in runs.values())
    return {
        "summary": f"{n:,} accounts crossing a boundary, all transitioned: {timings}; a sweep"
        f" with nothing due over the same {n:,} accounts: {empty_ms:.1f} ms (target: 100k"
        " within 10 s)",
        "accounts": n, "transitioned": runs[processes[0]]["transitioned"],
        "seconds": runs[1]["seconds"] if 1 in runs else best, "best_seconds": best,
        "by_processes": {str(p): r for p, r in runs.items()},
        "empty_sweep_ms": empty_ms, "setup_seconds": runs[processes[0]]["setup_seconds"],
    }
