"""Where a request's CPU goes: the server's event loop thread per request, stage by stage.

Saturated, the server's event loop thread runs at ~98 % and bounds the throughput
(docs/performance.md, "How to measure"), so its CPU per request over the floor's is what
a scenario costs beyond the cheapest gRPC call. This measures it for stages of the same
request, each leaving out one more part (bench/stages_site/sitecustomize.py), in paired
rounds (`bench.ab`), and prints each part's share:

- the floor (bench/floor.py);
- `answer`: the server as it is, each method answering a constant (its registration, its
  background work);
- `handler`: the handler runs (wrapper, auth, answer, a login's session), the call is not
  recorded and a login's records are not queued;
- `records`: the login's records queued and written too;
- the whole request: the call recorded too (its access line and metrics).

    python -m bench.stages [--scenario login] [--rounds 3]
    python -m bench.stages --icount     # the same stages' instructions (bench.icount)

Under valgrind the call record's 5 ms flush gathers ~50x fewer calls than at full speed, so
its per-flush costs weigh more a request there than they do in time.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from bench.ab import paired
from bench.icount import count_all
from bench.scenarios import SCENARIOS

SITE = Path(__file__).resolve().parent / "stages_site"
# (stage, what the step from the stage before adds)
STAGES = [
    ("floor", "the floor: an empty handler on the same grpc.aio"),
    ("answer", "the server around a constant answer (registration, background work)"),
    ("handler", "the handler: wrapper, auth, the answer, a login's session"),
    ("records", "a login's records: queued, grouped, written to Redis"),
    ("whole", "the call's record: access line and metrics"),
]


# The scenarios whose requests queue login records on the batch writer (a seat-limited
# login's go with its Lua call; a check without session has none): the others have no
# `records` stage, which would measure nothing but the rounds' spread.
QUEUES_RECORDS = {"login", "login_no_log", "redis"}


def variants(scenario: str) -> dict[str, dict[str, Any]]:
    site = {"PYTHONPATH": str(SITE)}
    stages: dict[str, dict[str, Any]] = {
        "floor": {"floor": True},
        "answer": {"env": {**site, "BENCH_STAGE": "answer"}},
        "handler": {"env": {**site, "BENCH_STAGE": "handler"}},
        "records": {"env": {**site, "BENCH_STAGE": "records"}},
        "whole": {},
    }
    if scenario not in QUEUES_RECORDS:
        del stages["records"]
    return stages


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="login",
                   choices=[s.name for s in SCENARIOS if not s.floor and not s.http])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--icount", action="store_true",
                   help="instructions per request (bench.icount) instead of CPU time")
    args = p.parse_args()
    scenario = next(s for s in SCENARIOS if s.name == args.scenario)
    if args.icount:
        counts = count_all(variants(scenario.name), scenario)
        table(f"{scenario.name}: instructions per request, net of the background (k)",
              {name: got.net / 1000 for name, got in counts.items()})
        return
    runs = paired(variants(scenario.name), scenario, args.rounds, args.seconds)
    table(f"{scenario.name}: event loop thread's CPU per request, median of {args.rounds}"
          " paired rounds (us)",
          {name: statistics.median(r[6] for r in got) for name, got in runs.items()})
    for name, got in runs.items():
        print(f"  {name}: loop thread {', '.join(f'{r[6]:.0f}' for r in got)} us;"
              f" req/s {', '.join(f'{r[1]:,.0f}' for r in got)}")


def table(title: str, cost: dict[str, float]) -> None:
    """Each stage's cost, its step from the stage before, and its ratio to the floor."""
    floor = cost["floor"]
    print(title)
    print("| stage | cost | step | over the floor | floor / stage | what the step adds |")
    print("|---|---:|---:|---:|---:|---|")
    before = None
    for name, what in STAGES:
        if name not in cost:
            continue
        got = cost[name]
        step = "" if before is None else f"{got - before:+.0f}"
        print(f"| {name} | {got:.0f} | {step} | {got - floor:+.0f} | {floor / got:.2f}"
              f" | {what} |")
        before = got


if __name__ == "__main__":
    main()
