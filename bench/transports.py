"""The Redis transport compared on the payment stream: instructions and seconds per event.

    python -m bench.transports [--events 2000] [--rounds 2] [--icount]

Each variant is `serve` with its Lua calls (commit_account, one per event) through another
client (`bench/transport_variant/sitecustomize.py`): the build's multiplexed connection,
redis-py with hiredis, coredis, valkey-glide. A round XADDs `--events` payment events and
times until the consumer group has applied them all (events/s, paired and alternating as
`bench.ab`); with `--icount` the server runs under callgrind and the instructions of all its
threads from the first XADD to the last acknowledgement are divided by the events (the
seat-limited login's figure is `bench.icount --scenario seat_login` with the same variants).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import redis as sync_redis

from bench import procs
from bench.extras import PAYMENT_EVENTS_PER_ACCOUNT, push_payments, upsert_many, wait_applied
from bench.icount import _totals
from bench.scenarios import USERS
from sessiongate.store import keys
from sessiongate.store.embedded import EmbeddedRedis

VARIANT_PATH = str(Path(__file__).with_name("transport_variant"))
VARIANTS = ["mux", "redispy", "coredis", "glide"]


def _env(kind: str) -> dict[str, str]:
    """The variant's environment (a PYTHONPATH given, e.g. a former build's, stays first)."""
    if kind == "mux":
        return {}
    path = ":".join(p for p in (os.environ.get("PYTHONPATH", ""), VARIANT_PATH) if p)
    return {"PYTHONPATH": path, "SG_BENCH_TRANSPORT": kind}


def run(redis: EmbeddedRedis, work: Path, kind: str, events: int, icount: bool
        ) -> tuple[float, float]:
    """(events/s, instructions per event or 0) of one run of `kind`."""
    client = sync_redis.Redis.from_url(redis.url)
    client.flushdb()
    ids = [f"bench-pay-{i}" for i in range(max(1, events // PAYMENT_EVENTS_PER_ACCOUNT))]
    out = work / f"callgrind-pay-{kind}.out"
    prefix = (["valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={out}"] if icount else [])
    saved = dict(os.environ)
    os.environ.update(_env(kind))
    try:
        srv = procs.serve(redis.url, work, name=f"pay-{kind}", prefix=prefix)
    finally:
        os.environ.clear()
        os.environ.update(saved)

    def control(*args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(srv.pid)], capture_output=True,
                       check=True)
    try:
        async def setup() -> None:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
                await upsert_many(ch, ids, users=USERS[:2])
        asyncio.run(setup())
        due = (datetime.now(UTC) + timedelta(days=20)).isoformat()
        if icount:
            control("-i", "on")
        t0 = time.perf_counter()
        wait_applied(client, push_payments(client, ids, events, due), timeout=600, poll=0.01)
        elapsed = time.perf_counter() - t0
        if client.xlen(keys.PAYMENT_DEAD_LETTER):
            raise RuntimeError(f"{kind}: events dead-lettered")
        instructions = 0.0
        if icount:
            control("-d")
            control("-i", "off")
    finally:
        srv.stop()
        client.close()
    if icount:
        dumps = sorted(work.glob(f"{out.name}.*"), key=lambda d: int(d.suffix[1:]))
        instructions = _totals(dumps[0]) / events
        for d in dumps:
            d.unlink()
    return events / elapsed, instructions


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--icount", action="store_true")
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sg-transports-"))
    redis = EmbeddedRedis(work / "redis", persistent=False)
    redis.start()
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in args.variants.split(",")}
    try:
        for _ in range(1 if args.icount else args.rounds):
            for kind in runs:
                runs[kind].append(run(redis, work, kind, args.events, args.icount))
    finally:
        redis.stop()
    for kind, got in runs.items():
        rates = [r for r, _ in got]
        icount = f"; {got[0][1]:,.0f} instructions per event" if args.icount else ""
        print(f"{kind}: events/s median {statistics.median(rates):,.0f}"
              f" (runs {', '.join(f'{r:,.0f}' for r in rates)}){icount}")


if __name__ == "__main__":
    main()
