"""A/B of the timed dunning sweep by CPU: the sweeping process's and Redis's, paired.

`bench.sweep` times the sweep by the wall clock, which on a shared machine follows the other
tenants. This sets up N accounts due at T0 (as `bench.sweep` does) for each tree in turn,
sweeps them in a process of that tree's own (`PYTHONPATH=<tree>/src:<tree>`, its `bench/`
too), and reports the process's user+sys seconds over the sweep loop, Redis's
(`INFO cpu`), and Redis's commands per account (`INFO commandstats`), alternating the
trees `--pairs` times.

    python -m bench.sweep_ab --accounts 20000 --pairs 3 before=/work/before now=.

`--icount` runs each tree's sweep once under `valgrind --tool=callgrind` instead and reports
instructions per account of the sweep loop (deterministic; no system calls or waits).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import redis as sync_redis

from sessiongate.store.embedded import EmbeddedRedis


def _redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _sweep(url: str) -> dict[str, Any]:
    """In the tree under test: sweep until nothing is due; the loop's figures."""
    from bench.extras import inprocess
    from bench.sweep import CROSSED
    from sessiongate.app import settle_heap
    from sessiongate.billing.scheduler import Sweeper
    from sessiongate.service.billing import engine_for

    client = sync_redis.Redis.from_url(url)
    async with inprocess(url, CROSSED) as (app, _):
        settle_heap()  # as `serve` does once started
        # A tree before the stream workers moved onto the transport sweeps through redis-py.
        source = app.rt.redis if hasattr(app.rt, "redis") else app.rt.transport
        sweeper = Sweeper(source, engine_for(app.rt), app.rt.clock)
        client.config_resetstat()
        r0, u0 = _redis_cpu(client), resource.getrusage(resource.RUSAGE_SELF)
        os.getppid()  # marks the loop's start for callgrind (--dump-before=os_getppid)
        moved = 0
        while (made := await sweeper.sweep_once()) > 0:
            moved += made
        os.getppid()
        u1, r1 = resource.getrusage(resource.RUSAGE_SELF), _redis_cpu(client)
        calls = {k.removeprefix("cmdstat_"): v["calls"]
                 for k, v in client.info("commandstats").items()}
    cpu = (u1.ru_utime - u0.ru_utime) + (u1.ru_stime - u0.ru_stime)
    return {"moved": moved, "cpu": cpu, "redis_cpu": r1 - r0, "calls": calls}


def _child(tree: str, *args: str, wrap: tuple[str, ...] = ()) -> str:
    """This file run in `tree`'s process (a tree without it too), with `tree`'s packages."""
    env = dict(os.environ, PYTHONPATH=f"{tree}/src:{tree}")
    code = (f"import runpy, sys; sys.argv = {[__file__, *args]!r};"
            f" runpy.run_path({os.path.abspath(__file__)!r}, run_name='__main__')")
    return subprocess.run([*wrap, sys.executable, "-c", code], cwd=tree, env=env, check=True,
                          capture_output=True, text=True).stdout


def _setup(tree: str, url: str, n: int) -> None:
    sync_redis.Redis.from_url(url).flushall()
    _child(tree, "--child-setup", url, str(n))


def _icount(tree: str, url: str, n: int, out: str) -> float:
    _setup(tree, url, n)
    for old in glob.glob(out + "*"):
        os.remove(old)
    _child(tree, "--child-sweep", url, wrap=("valgrind", "--tool=callgrind",
                                             f"--callgrind-out-file={out}",
                                             "--dump-before=os_getppid"))
    with open(f"{out}.2") as f:  # part 2: from the first mark to the second
        total = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
    assert total is not None
    return int(total.group(1)) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trees", nargs="*", help="name=path of each tree")
    p.add_argument("--accounts", type=int, default=20_000)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--icount", action="store_true", help="instructions per account instead")
    p.add_argument("--child-setup", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--child-sweep", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_setup:
        from bench.sweep import _setup as setup_accounts

        url, n = args.child_setup
        asyncio.run(setup_accounts(url, [f"sweep-{n}-{i}" for i in range(int(n))]))
        return
    if args.child_sweep:
        print(json.dumps(asyncio.run(_sweep(args.child_sweep))))
        return
    trees = [t.split("=", 1) for t in args.trees]
    n = args.accounts
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in trees}
    with EmbeddedRedis(tempfile.mkdtemp(), persistent=False) as redis:
        if args.icount:
            for name, tree in trees:
                per = _icount(os.path.abspath(tree), redis.url, n, f"/tmp/sweep-ab-{name}")
                print(f"{name}: {per:,.0f} instructions per account swept")
            return
        for pair in range(args.pairs):
            for name, tree in trees:
                _setup(os.path.abspath(tree), redis.url, n)
                t0 = time.perf_counter()
                r = json.loads(_child(os.path.abspath(tree), "--child-sweep",
                                      redis.url).splitlines()[-1])
                r["wall"] = time.perf_counter() - t0
                if r["moved"] != n:
                    raise RuntimeError(f"{name}: {r['moved']} of {n} transitioned")
                runs[name].append(r)
                per = sum(r["calls"].values()) / n
                print(f"pair {pair} {name}: CPU {r['cpu']:.2f} s, Redis {r['redis_cpu']:.2f}"
                      f" s, {per:.2f} commands per account", flush=True)
    from bench.pairs import paired, spread  # here: a child runs in a tree without it

    first = trees[0][0]
    for name, _ in trees:
        red = statistics.median(r["redis_cpu"] for r in runs[name])
        print(f"{name}: CPU {spread([r['cpu'] for r in runs[name]])} s, Redis {red:.2f} s;"
              f" paired CPU / {first}: {paired(runs[name], runs[first], 'cpu')}")

if __name__ == "__main__":
    main()
