"""A/B of the payment stream by CPU: the `serve` process's and Redis's per event, paired.

`bench.run`'s payment stream times XADD to the last acknowledgement by the wall clock, which
on a shared machine follows the other tenants. This runs the same stream (N events, ten per
account: invoices and payments alternating) against each tree's own `serve` in turn
(`PYTHONPATH=<tree>/src:<tree>`, its `bench/` too), and reports the server's user+sys
seconds from its start-up to the last acknowledgement, Redis's (`INFO cpu`) and the
end-to-end events/s, alternating the trees `--pairs` times.

    python -m bench.payments_ab --events 100000 --pairs 3 before=/work/before now=.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import redis as sync_redis

from sessiongate.store.embedded import EmbeddedRedis

PAYMENT_STREAM = "sessiongate:payments"
PER_ACCOUNT = 10


def _redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _run(url: str, events: int) -> dict[str, Any]:
    """In the tree under test: its `serve`, the accounts, the stream, until all applied."""
    from bench import procs
    from bench.extras import upsert_many
    from bench.scenarios import USERS

    client = sync_redis.Redis.from_url(url)
    client.flushdb()
    ids = [f"bench-pay-{i}" for i in range(max(1, events // PER_ACCOUNT))]
    work = Path(tempfile.mkdtemp(prefix="sg-pay-ab-"))
    srv = procs.serve(url, work, name="payments")
    try:
        async def setup() -> None:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
                await upsert_many(ch, ids, users=USERS[:2])
        asyncio.run(setup())
        due = (datetime.now(UTC) + timedelta(days=20)).isoformat()
        c0, r0, t0 = srv.cpu_seconds(), _redis_cpu(client), time.perf_counter()
        # bench.extras.push_payments's stream, written out: this runs in the tree under test,
        # whose bench/ may predate that helper.
        last_id = b""
        pipe = client.pipeline(transaction=False)
        for n in range(events):
            aid = ids[n % len(ids)]
            if (n // len(ids)) % 2 == 0:
                fields = {"event_id": f"e{n}", "account_id": aid, "type": "INVOICE_ISSUED",
                          "invoice_id": f"i{n}", "amount_minor": "1000", "due_at": due}
            else:
                fields = {"event_id": f"e{n}", "account_id": aid,
                          "type": "PAYMENT_SUCCEEDED", "amount_minor": "1000"}
            pipe.xadd(PAYMENT_STREAM, fields)  # type: ignore[arg-type]
            if len(pipe) >= 1000:
                last_id = pipe.execute()[-1]
        if len(pipe):
            last_id = pipe.execute()[-1]
        deadline = time.monotonic() + max(120.0, events / 200)
        while True:
            groups = client.xinfo_groups(PAYMENT_STREAM)
            g = groups[0] if groups else {}
            if g.get("last-delivered-id") == last_id and g.get("pending") == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"not all events applied in time: {g}")
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        return {"cpu": srv.cpu_seconds() - c0, "redis_cpu": _redis_cpu(client) - r0,
                "wall": wall, "events_per_s": events / wall,
                "dead": client.xlen(f"{PAYMENT_STREAM}:dead")}
    finally:
        srv.stop()


def _child(tree: str, url: str, events: int) -> dict[str, Any]:
    """This file run in `tree`'s process (a tree without it too), with `tree`'s packages."""
    env = dict(os.environ, PYTHONPATH=f"{tree}/src:{tree}")
    args = [__file__, "--child", url, "--events", str(events)]
    code = (f"import runpy, sys; sys.argv = {args!r};"
            f" runpy.run_path({os.path.abspath(__file__)!r}, run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True,
                         capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trees", nargs="*", help="name=path of each tree")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(_run(args.child, args.events)))
        return
    trees = [(name, os.path.abspath(path)) for name, path in
             (t.split("=", 1) for t in args.trees)]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in trees}
    with EmbeddedRedis(Path(tempfile.mkdtemp()), persistent=False) as redis:
        for pair in range(args.pairs):
            for name, tree in trees:
                r = _child(tree, redis.url, args.events)
                if r["dead"]:
                    raise RuntimeError(f"{name}: {r['dead']} events dead-lettered")
                runs[name].append(r)
                print(f"pair {pair} {name}: serve CPU {r['cpu']:.2f} s, Redis"
                      f" {r['redis_cpu']:.2f} s, {r['events_per_s']:,.0f} events/s",
                      flush=True)
    from bench.pairs import paired, spread  # here: a child runs in a tree without it

    first = trees[0][0]
    for name, _ in trees:
        rate = statistics.median(r["events_per_s"] for r in runs[name])
        print(f"{name}: serve CPU {spread([r['cpu'] for r in runs[name]])} s, {rate:,.0f}"
              f" events/s; paired CPU / {first}: {paired(runs[name], runs[first], 'cpu')}")

if __name__ == "__main__":
    main()
