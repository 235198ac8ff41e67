"""A/B of `serve` variants by server CPU per request of a scenario, paired and alternating.

Single benchmark runs on a shared 2-core machine vary by more than the cost of a small change
(docs/performance.md, "How to measure"). This starts each variant in turn against one Redis,
loads it with h2load (saturated 8x8, or `--rate`), reads its CPU time from /proc, and repeats
the round `--rounds` times, so that every variant sees the same moments of the machine.

    python -m bench.ab '{"default": {}, "no log": {"ACCESS_LOG": "false"}}' --rounds 4
    python -m bench.ab '{"now": {}, "before": {"env": {"PYTHONPATH": "/tmp/old/src"}}}' \
        --scenario seat_login

A variant is a set of settings (env names without the SESSIONGATE_ prefix), or environment
variables of its own under the key "env" (e.g. PYTHONPATH for a former build); `{"floor":
true}` is the floor server (bench/floor.py) instead of `serve`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench import h2load, procs
from bench.scenarios import SCENARIOS, Scenario
from sessiongate.store.embedded import EmbeddedRedis

Run = tuple[float, float, float, float, float, float, float]  # one run: `measure`


def measure(redis: EmbeddedRedis, work: Path, name: str, variant: dict[str, Any], h2: str,
            body: Path | None, load: h2load.Load, scenario: Scenario) -> Run:
    """(server CPU us per request, requests/s, p99, p99.9 and max ms, Redis's CPU us per
    request, the event loop thread's CPU us per request) of one run of `variant` on
    `scenario`'s request (its settings under the variant's)."""
    redis_url = redis.url
    settings = {**scenario.settings,
                **{k: v for k, v in variant.items() if k not in ("env", "floor")}}
    saved = dict(os.environ)
    os.environ.update(variant.get("env", {}))
    try:
        srv = (procs.floor(work, http=scenario.http) if variant.get("floor") else
               procs.serve(redis_url, work, name=name.replace(" ", "-"), http=scenario.http,
                           **settings))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        if not variant.get("floor"):  # the floor answers an empty response
            scenario.verify(srv)
        before, redis_before = srv.cpu_seconds(), procs.cpu_of(redis.pid)
        loop_before = srv.loop_cpu_seconds()
        out = h2load.run(h2, scenario.url(srv), body, load, work, scenario.headers(),
                         h1=scenario.http)
        cpu = srv.cpu_seconds() - before
        loop_cpu = srv.loop_cpu_seconds() - loop_before
        redis_cpu = procs.cpu_of(redis.pid) - redis_before
        # CPU covers the warm-up too: count its requests at the measured rate.
        sent = out.requests * (load.duration + load.warmup) / load.duration
        return (cpu / sent * 1e6, out.rps, out.p99_ms, out.p999_ms, out.max_ms,
                redis_cpu / sent * 1e6, loop_cpu / sent * 1e6)
    finally:
        srv.stop()


def paired(variants: dict[str, dict[str, Any]], scenario: Scenario, rounds: int,
           seconds: float = 6.0, rate: int = 0) -> dict[str, list[Run]]:
    """Each variant measured in turn (`measure`), `rounds` times, against one Redis:
    saturated (8 x 8 streams), or `rate` requests/s from 10 connections."""
    load = (h2load.Load(clients=10, streams=1, duration=seconds, warmup=1.0, rate=rate)
            if rate else h2load.Load(clients=8, streams=8, duration=seconds, warmup=1.0))
    h2 = h2load.ensure_h2load()
    work = Path(tempfile.mkdtemp(prefix="sg-ab-"))
    body = scenario.body(work)
    redis = EmbeddedRedis(work / "redis", persistent=False)
    redis.start()
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    try:
        for _ in range(rounds):
            for name, variant in variants.items():
                runs[name].append(measure(redis, work, name, variant, h2, body, load,
                                         scenario))
    finally:
        redis.stop()
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", help='JSON: {"name": {"SETTING": "value", ...}, ...}')
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--rate", type=int, default=0, help="total requests/s (0: saturated)")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--scenario", default="login",
                   choices=[s.name for s in SCENARIOS if not s.floor])
    args = p.parse_args()
    scenario = next(s for s in SCENARIOS if s.name == args.scenario)
    variants: dict[str, dict[str, Any]] = json.loads(args.variants)
    runs = paired(variants, scenario, args.rounds, args.seconds, args.rate)
    for name, got in runs.items():
        cpu, loop = [g[0] for g in got], [g[6] for g in got]
        print(f"{name}: CPU per request median {statistics.median(cpu):.0f} us"
              f" (runs {', '.join(f'{c:.0f}' for c in cpu)});"
              f" event loop thread's median {statistics.median(loop):.0f} us"
              f" (runs {', '.join(f'{c:.0f}' for c in loop)});"
              f" req/s {', '.join(f'{g[1]:,.0f}' for g in got)};"
              f" p99 ms {', '.join(f'{g[2]:.2f}' for g in got)};"
              f" p99.9 ms {', '.join(f'{g[3]:.2f}' for g in got)};"
              f" max ms {', '.join(f'{g[4]:.2f}' for g in got)};"
              f" Redis CPU per request {', '.join(f'{g[5]:.0f}' for g in got)} us")


if __name__ == "__main__":
    main()
