"""Instructions per request under valgrind (callgrind): a deterministic A/B on a noisy host.

On the shared 2-core VMs the CPU time per request of one build moves by +-10 us between runs
(`bench.ab`), more than most changes are worth. The instructions a server executes per request
do not: repeated runs of one build agree within ~1 %. This runs each variant (`serve`
settings, another build through "env", or `{"floor": true}`) under `valgrind
--tool=callgrind` with instrumentation off, warms it up, then counts every thread's
instructions over N requests sent by h2load (4 connections x 4 streams).

    python -m bench.icount '{"floor": {"floor": true}, "now": {}, "no log": {"ACCESS_LOG": "0"}}'
    python -m bench.icount '{"before": {"env": {"PYTHONPATH": "/tmp/old/src:/tmp/old"}}, "now": {}}'

Read with care: instructions are not time (system calls, cache misses and waits are not in
them), and under valgrind the server runs ~50x slower, so work done per second (the batch
writer's tick, the 1 s sweep, the payment consumer's poll) weighs ~50x more per request than
at full speed. So each variant is first counted idle for `--idle` seconds: that background
rate, times the load's wall time, is taken off the load's count ("net"; the raw count is
printed too), and the background rate over the floor's saturated rate is what it costs a
request at full speed. The access log's 5 ms flush is not background (it runs per batch of
requests, and its batches are ~50x smaller under valgrind): compare with ACCESS_LOG=false
when it is not what changed. `--annotate` prints the C functions with the most instructions
(callgrind_annotate) for each variant.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

from bench import h2load, procs
from bench.scenarios import SCENARIOS, Scenario
from sessiongate.store.embedded import EmbeddedRedis


def _h2load(h2: str, scenario: Scenario, url: str, body: Path | None, requests: int) -> None:
    if scenario.http:
        cmd = [h2, url, "--h1", "-n", str(requests), "-c", "16", "-m", "1"]
    else:
        assert body is not None
        cmd = [h2, url, "-d", str(body), "-H", "content-type: application/grpc",
               "-H", "te: trailers", "-n", str(requests), "-c", "4", "-m", "4"]
    for name, value in scenario.headers():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if f"{requests} succeeded" not in out:
        raise RuntimeError(f"h2load: not every request succeeded:\n{out}")


def _totals(path: Path) -> int:
    """The instruction total of a callgrind dump."""
    for line in path.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


class Count(NamedTuple):
    raw: float  # instructions per request, as counted under load
    net: float  # less the background rate over the load's wall time
    background: float  # instructions per second, idle


def count(redis_url: str, work: Path, name: str, variant: dict[str, Any], h2: str,
          body: Path | None, scenario: Scenario, requests: int, annotate: bool,
          idle: float) -> Count:
    """Instructions per request of `variant` on `scenario`'s request, and idle per second."""
    out = work / f"callgrind-{name.replace(' ', '-')}.out"
    prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
              f"--callgrind-out-file={out}"]
    settings = {**scenario.settings,
                **{k: v for k, v in variant.items() if k not in ("env", "floor")}}
    saved = dict(os.environ)
    os.environ.update(variant.get("env", {}))
    try:
        srv = (procs.floor(work, prefix, http=scenario.http) if variant.get("floor") else
               procs.serve(redis_url, work, name=name.replace(" ", "-"), prefix=prefix,
                           http=scenario.http, **settings))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        if not variant.get("floor"):
            scenario.verify(srv)
        url = scenario.url(srv)
        _h2load(h2, scenario, url, body, 500)  # warm-up, not counted
        def control(*args: str) -> None:
            subprocess.run(["callgrind_control", *args, str(srv.pid)], capture_output=True,
                           check=True)

        control("-i", "on")
        time.sleep(idle)
        control("-d")  # dump 1: the background, idle (a dump also zeroes the counters)
        started = time.monotonic()
        _h2load(h2, scenario, url, body, requests)
        loaded = time.monotonic() - started
        control("-d")  # dump 2: the load
        control("-i", "off")
    finally:
        srv.stop()
    # The -d dumps in order (the one at exit counts 0).
    dumps = sorted(work.glob(f"{out.name}.*"), key=lambda d: int(d.suffix[1:]))
    background, total = _totals(dumps[0]) / idle, _totals(dumps[1])
    if annotate:
        text = subprocess.run(["callgrind_annotate", "--threshold=80", str(dumps[1])],
                              capture_output=True, text=True).stdout
        print(f"--- {name}\n" + "\n".join(text.splitlines()[18:50]))
    for d in dumps:
        d.unlink()
    return Count(total / requests, (total - background * loaded) / requests, background)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", help='JSON: {"name": {"SETTING": "value", ...}, ...}')
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--scenario", default="login",
                   choices=[s.name for s in SCENARIOS if not s.floor])
    p.add_argument("--annotate", action="store_true")
    p.add_argument("--idle", type=float, default=5.0,
                   help="seconds counted idle first, for the background rate")
    args = p.parse_args()
    scenario = next(s for s in SCENARIOS if s.name == args.scenario)
    variants: dict[str, dict[str, Any]] = json.loads(args.variants)
    count_all(variants, scenario, args.requests, args.annotate, args.idle)


def count_all(variants: dict[str, dict[str, Any]], scenario: Scenario, requests: int = 2000,
              annotate: bool = False, idle: float = 5.0) -> dict[str, Count]:
    """`count` of each variant in turn against one Redis, each printed as it comes."""
    h2load.ensure_tool("valgrind", "valgrind")
    h2 = h2load.ensure_h2load()
    work = Path(tempfile.mkdtemp(prefix="sg-icount-"))
    body = scenario.body(work)
    redis = EmbeddedRedis(work / "redis", persistent=False)
    redis.start()
    counts: dict[str, Count] = {}
    try:
        for name, variant in variants.items():
            got = counts[name] = count(redis.url, work, name, variant, h2, body, scenario,
                                       requests, annotate, idle)
            print(f"{name}: {got.net:,.0f} instructions per request net of the background"
                  f" ({got.raw:,.0f} counted; background {got.background:,.0f} per second)")
    finally:
        redis.stop()
    return counts


if __name__ == "__main__":
    main()
