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
them), and under valgrind the server runs ~50x slower, so work done per second (the 1 s
sweep, the payment consumer's poll, the access log's 5 ms flush) weighs ~50x more per
request than at full speed: compare per-request paths with `SCHEDULER=false` when the
scheduler is not what changed. `--annotate` prints the C functions with the most
instructions (callgrind_annotate) for each variant.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import grpc

from bench import h2load, procs
from bench.scenarios import SCENARIOS, Scenario, app_md
from sessiongate.store.embedded import EmbeddedRedis


def _h2load(h2: str, url: str, body: Path, requests: int) -> None:
    cmd = [h2, url, "-d", str(body), "-H", "content-type: application/grpc",
           "-H", "te: trailers", "-n", str(requests), "-c", "4", "-m", "4"]
    for name, value in app_md():
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


def count(redis_url: str, work: Path, name: str, variant: dict[str, Any], h2: str,
          body: Path, scenario: Scenario, requests: int, annotate: bool) -> float:
    """Instructions per request of `variant` on `scenario`'s request."""
    out = work / f"callgrind-{name.replace(' ', '-')}.out"
    prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
              f"--callgrind-out-file={out}"]
    settings = {**scenario.settings,
                **{k: v for k, v in variant.items() if k not in ("env", "floor")}}
    saved = dict(os.environ)
    os.environ.update(variant.get("env", {}))
    try:
        srv = (procs.floor(work, prefix) if variant.get("floor") else
               procs.serve(redis_url, work, name=name.replace(" ", "-"), prefix=prefix,
                           **settings))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        if not variant.get("floor"):
            with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
                scenario.verify(ch)
        url = f"http://127.0.0.1:{srv.port}{scenario.path}"
        _h2load(h2, url, body, 500)  # warm-up, not counted
        control = ["callgrind_control"]
        subprocess.run([*control, "-i", "on", str(srv.pid)], capture_output=True, check=True)
        _h2load(h2, url, body, requests)
        subprocess.run([*control, "-i", "off", str(srv.pid)], capture_output=True, check=True)
        subprocess.run([*control, "-d", str(srv.pid)], capture_output=True, check=True)
    finally:
        srv.stop()
    dumps = sorted(work.glob(f"{out.name}.*"))  # the -d dump (the one at exit counts 0)
    total = sum(_totals(d) for d in dumps)
    if annotate:
        for d in dumps:
            text = subprocess.run(["callgrind_annotate", "--threshold=80", str(d)],
                                  capture_output=True, text=True).stdout
            print(f"--- {name}\n" + "\n".join(text.splitlines()[18:50]))
    for d in dumps:
        d.unlink()
    return total / requests


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", help='JSON: {"name": {"SETTING": "value", ...}, ...}')
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--scenario", default="near_cache",
                   choices=[s.name for s in SCENARIOS if not s.floor])
    p.add_argument("--annotate", action="store_true")
    args = p.parse_args()
    scenario = next(s for s in SCENARIOS if s.name == args.scenario)
    variants: dict[str, dict[str, Any]] = json.loads(args.variants)
    h2load.ensure_tool("valgrind", "valgrind")
    h2 = h2load.ensure_h2load()
    work = Path(tempfile.mkdtemp(prefix="sg-icount-"))
    body = h2load.write_request(work / "request.bin", scenario.request())
    redis = EmbeddedRedis(work / "redis", persistent=False)
    redis.start()
    try:
        for name, variant in variants.items():
            per = count(redis.url, work, name, variant, h2, body, scenario, args.requests,
                        args.annotate)
            print(f"{name}: {per:,.0f} instructions per request")
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
