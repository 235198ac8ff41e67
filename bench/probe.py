"""Time named functions inside a loaded `sessiongate serve`: what a tight loop hides.

A function timed in a loop of its own runs with warm caches and no system call contention;
in the server under load the same call can cost several times more (a nonce's getrandom(2)
looked like 0.1 us in a loop and was 4.3 us in the server). This starts a server whose
PYTHONPATH loads `bench/probe_site/sitecustomize.py`, which wraps each target with a timer
before anything imports it, loads the server like `bench.ab` (saturated, or `--rate`), and
prints each target's calls per request and mean time per call (the wrapper's ~0.3 us
included; nested targets include their inner targets' wrappers).

    python -m bench.probe sessiongate.domain.sessions:new_session \\
        sessiongate.service.answer_memo:AnswerMemo.sent [--scenario login] [--rate 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench import h2load, procs
from bench.scenarios import SCENARIOS
from sessiongate.store.embedded import EmbeddedRedis

SITE = Path(__file__).resolve().parent / "probe_site"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="+", help="module:function or module:Class.method")
    p.add_argument("--scenario", default="login",
                   choices=[s.name for s in SCENARIOS if not s.floor])
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--rate", type=int, default=0, help="total requests/s (0: saturated)")
    args = p.parse_args()
    scenario = next(s for s in SCENARIOS if s.name == args.scenario)
    load = (h2load.Load(clients=10, streams=1, duration=args.seconds, warmup=1.0,
                        rate=args.rate) if args.rate else
            h2load.Load(clients=8, streams=8, duration=args.seconds, warmup=1.0))
    h2 = h2load.ensure_h2load()
    work = Path(tempfile.mkdtemp(prefix="sg-probe-"))
    out = work / "probe.json"
    redis = EmbeddedRedis(work / "redis", persistent=False)
    redis.start()
    saved = dict(os.environ)
    os.environ.update({"PYTHONPATH": str(SITE), "PROBE_TARGETS": ",".join(args.targets),
                       "PROBE_OUT": str(out)})
    try:
        srv = procs.serve(redis.url, work, name="probed", http=scenario.http,
                          **scenario.settings)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        scenario.verify(srv)
        time.sleep(0.6)
        before = json.loads(out.read_text())
        got = h2load.run(h2, scenario.url(srv), scenario.body(work), load, work,
                         scenario.headers(), h1=scenario.http)
        time.sleep(0.6)  # the stats file is written every 0.5 s
        after = json.loads(out.read_text())
    finally:
        srv.stop()
        redis.stop()
    requests = got.requests * (load.duration + load.warmup) / load.duration
    print(f"{args.scenario}: {requests:,.0f} requests ({got.rps:,.0f}/s)")
    for target in args.targets:
        calls = after[target][0] - before[target][0]
        seconds = after[target][1] - before[target][1]
        mean = seconds / calls * 1e6 if calls else 0.0
        print(f"  {target}: {calls / requests:.2f} calls a request, {mean:.2f} us a call")


if __name__ == "__main__":
    main()
