"""CPU per seat-limited `SessionStore.take` in process, against a real redis-server.

    python -m bench.scripts_micro [--concurrency 1,8,64] [--calls 20000] [--repeat 3]
                                  [--scripts path/to/other_scripts.py ...]

`burst`: each round starts `concurrency` takes at once (different users, a seat limit no one
reaches) and waits for them all; `stream`: `concurrency` takes in flight, at most one started
per event-loop iteration, as grpc.aio hands requests to a saturated server. Reports this
process's CPU time (`time.process_time`: redis-server's own CPU is not counted) and wall
time per call.
`--scripts FILE` loads another `Scripts` class from FILE (e.g. a copy of a former
`store/scripts.py`) so that two implementations are compared in the same minute, alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sessiongate.domain.sessions import new_session
from sessiongate.store import scripts as current
from sessiongate.store.client import transport
from sessiongate.store.embedded import EmbeddedRedis
from sessiongate.store.sessions import SessionStore


def load(path: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"other_scripts_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Scripts


async def run(url: str, cls: Any, concurrency: int, calls: int, stream: bool
              ) -> tuple[float, float]:
    client = transport(url)
    store = SessionStore(client, cls(client))
    now = datetime.now(UTC)
    expires = now + timedelta(minutes=5)
    refs = [new_session(f"acct-{i % 50}", f"user-{i}") for i in range(concurrency)]
    try:
        for _ in range(3):  # warm: connections, script cache
            await asyncio.gather(*(store.take(r, now, expires, 10_000) for r in refs))
        rounds = max(1, calls // concurrency)
        n = rounds * concurrency
        c0, w0 = time.process_time(), time.perf_counter()
        if stream:
            await _stream(store, refs, now, expires, n)
        else:
            for _ in range(rounds):
                await asyncio.gather(*(store.take(r, now, expires, 10_000) for r in refs))
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        return 1e6 * cpu / n, 1e6 * wall / n
    finally:
        await client.aclose()


async def _stream(store: SessionStore, refs: list[Any], now: datetime, expires: datetime,
                  n: int) -> None:
    """`n` takes, at most one started per event-loop iteration and `len(refs)` in flight:
    how a gRPC server hands requests to its handlers (one per wake-up, mostly)."""
    loop = asyncio.get_running_loop()
    free = list(refs)
    wake: asyncio.Future[None] | None = None
    started = done = 0
    finished = loop.create_future()

    async def one(ref: Any) -> None:
        nonlocal wake, done
        await store.take(ref, now, expires, 10_000)
        free.append(ref)
        done += 1
        if done == n:
            finished.set_result(None)
        if wake is not None and not wake.done():
            wake.set_result(None)

    tasks = set()
    while started < n:
        if not free:
            wake = loop.create_future()
            await wake
            continue
        task = asyncio.ensure_future(one(free.pop()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        started += 1
        await asyncio.sleep(0)
    await finished


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--concurrency", default="1,8,64")
    p.add_argument("--calls", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--mode", default="stream,burst",
                   help="stream: one new call per loop iteration; burst: all at once")
    p.add_argument("--scripts", action="append", default=[],
                   help="another scripts.py to compare with the current one")
    p.add_argument("--url", default="", help="an existing Redis (default: start one)")
    args = p.parse_args()
    impls = [("current", current.Scripts)] + [(f, load(f)) for f in args.scripts]
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        url = args.url
        if not url:
            server = EmbeddedRedis(tmp, persistent=False)
            server.start()
            url = server.url
        try:
            for mode, conc in ((m, int(c)) for m in args.mode.split(",")
                               for c in args.concurrency.split(",")):
                got: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in impls}
                for _ in range(args.repeat):
                    for name, cls in impls:  # alternating: paired against the machine's mood
                        got[name].append(asyncio.run(run(url, cls, conc, args.calls,
                                                         mode == "stream")))
                for name, res in got.items():
                    cpu = statistics.median(r[0] for r in res)
                    wall = statistics.median(r[1] for r in res)
                    print(f"{mode} {conc:3d}  {name:30s}  CPU {cpu:6.1f} us/call  "
                          f"wall {wall:6.1f} us/call  (CPU runs: "
                          f"{', '.join(f'{r[0]:.1f}' for r in res)})")
        finally:
            if server is not None:
                server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
